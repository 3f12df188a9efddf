"""Dependency audit against PyPI's advisory data, as far as this network allows.

pip-audit asks PyPI for each installed *version* (``/pypi/<name>/<version>/json``) or OSV; from
these machines the first answers 404 and OSV does not resolve, so pip-audit reports every package
as "not audited" and passes. PyPI's *project* document (``/pypi/<name>/json``) is reachable: it
carries the known vulnerabilities of the project's latest release (PyPI takes them from OSV) and
every release's yanked flag. So this script checks, for every distribution installed in the
running environment:

* installed == latest release: its known vulnerabilities (withdrawn ones left out);
* every installed version: whether it was yanked (PyPI's own "do not use");
* installed older than latest: listed as not checkable here (the advisory data for that version
  is only in the per-version document).

Findings fail the run (exit 1) unless their id is listed, with a reason, in
``.dependency-audit-ignore`` (``ID  # why``). No network: exit 2 with the reason.

Run: ``python scripts/audit_dependencies.py`` (``make test`` runs it with the project's venv).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import urllib.error
import urllib.request
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

PYPI = "https://pypi.org/pypi/{name}/json"
IGNORE_FILE = Path(__file__).resolve().parent.parent / ".dependency-audit-ignore"
SKIP = {"stratus-lakehouse"}  # the project itself (editable install)


@dataclass
class Result:
    name: str
    installed: str
    latest: str | None = None
    findings: list[str] = field(default_factory=list)  # "ID: summary"
    checked: bool = False  # advisory data applied to the installed version
    error: str | None = None


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def judge(name: str, installed: str, doc: dict | None) -> Result:
    """What PyPI's project document says about this installed version (None: not on PyPI)."""
    res = Result(name, installed)
    if doc is None:
        res.error = "not on PyPI"
        return res
    res.latest = str(doc.get("info", {}).get("version", ""))
    files = doc.get("releases", {}).get(installed) or []
    if files and all(f.get("yanked") for f in files):
        reason = files[0].get("yanked_reason") or "no reason given"
        res.findings.append(f"YANKED-{norm(name)}-{installed}: yanked on PyPI ({reason})")
    if installed == res.latest:
        res.checked = True
        for vuln in doc.get("vulnerabilities") or []:
            if vuln.get("withdrawn"):
                continue
            ids = [vuln.get("id", "?"), *(vuln.get("aliases") or [])]
            fixed = ", ".join(vuln.get("fixed_in") or []) or "no fix yet"
            summary = (vuln.get("summary") or vuln.get("details") or "").splitlines()
            res.findings.append(
                f"{ids[0]}: {summary[0][:100] if summary else ''} (fixed in {fixed})"
            )
    return res


def fetch(name: str, timeout: float) -> dict | None:
    url = PYPI.format(name=name)  # a fixed https URL
    req = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
            return json.load(resp)  # type: ignore[no-any-return]
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


def installed() -> dict[str, str]:
    out: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name and norm(name) not in SKIP:
            out[norm(name)] = dist.version
    return out


def ignored(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            ident, _, why = line.partition("#")
            if ident.strip():
                out[ident.strip()] = why.strip()
    return out


def report(results: Iterable[Result], ignore: dict[str, str]) -> int:
    results = sorted(results, key=lambda r: r.name)
    failing = 0
    for r in results:
        for finding in r.findings:
            ident = finding.split(":", 1)[0]
            if ident in ignore:
                print(f"ignored  {r.name} {r.installed}: {finding}  [{ignore[ident]}]")
            else:
                failing += 1
                print(f"FINDING  {r.name} {r.installed}: {finding}")
    checked = [r for r in results if r.checked]
    behind = [r for r in results if not r.checked and r.error is None]
    missing = [r for r in results if r.error is not None]
    print(
        f"{len(results)} distributions: {len(checked)} at their latest release checked against "
        f"PyPI's advisories, {len(behind)} older than latest (yank status checked only), "
        f"{len(missing)} not on PyPI; {failing} finding(s) not ignored"
    )
    if behind:
        print(
            "older than latest: " + ", ".join(f"{r.name} {r.installed}<{r.latest}" for r in behind)
        )
    return 1 if failing else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--ignore-file", type=Path, default=IGNORE_FILE)
    args = parser.parse_args(argv)
    wanted = installed()

    def one(item: tuple[str, str]) -> Result:
        name, version = item
        return judge(name, version, fetch(name, args.timeout))

    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(one, sorted(wanted.items())))
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        print(f"dependency audit: PyPI unreachable: {exc}", file=sys.stderr)
        return 2
    return report(results, ignored(args.ignore_file))


if __name__ == "__main__":
    sys.exit(main())
