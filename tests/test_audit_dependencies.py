"""scripts/audit_dependencies.py: what it concludes from PyPI's project document (the network
part runs in `make test` itself)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "audit_dependencies.py"
spec = importlib.util.spec_from_file_location("audit_dependencies", SCRIPT)
assert spec is not None and spec.loader is not None
audit = importlib.util.module_from_spec(spec)
sys.modules["audit_dependencies"] = audit
spec.loader.exec_module(audit)


def doc(latest: str, vulns: list[dict], releases: dict[str, list[dict]] | None = None) -> dict:
    """The fields of https://pypi.org/pypi/<name>/json the audit reads."""
    return {"info": {"version": latest}, "vulnerabilities": vulns, "releases": releases or {}}


VULN = {
    "id": "GHSA-xxxx-yyyy-zzzz",
    "aliases": ["CVE-2099-0001"],
    "summary": "Sandbox escape",
    "fixed_in": ["3.1.4"],
    "withdrawn": None,
}


def test_a_vulnerability_of_the_installed_latest_release_is_a_finding(capsys) -> None:
    r = audit.judge("jinja2", "3.1.3", doc("3.1.3", [VULN], {"3.1.3": [{"yanked": False}]}))
    assert r.checked and r.findings == ["GHSA-xxxx-yyyy-zzzz: Sandbox escape (fixed in 3.1.4)"]
    assert audit.report([r], {}) == 1
    assert "FINDING  jinja2 3.1.3: GHSA-xxxx-yyyy-zzzz" in capsys.readouterr().out
    # listed with a reason: reported as ignored, the run passes
    assert audit.report([r], {"GHSA-xxxx-yyyy-zzzz": "not reachable from Stratus"}) == 0


def test_withdrawn_advisories_do_not_count_and_older_versions_are_not_claimed_checked() -> None:
    withdrawn = {**VULN, "withdrawn": "2099-01-01T00:00:00Z"}
    assert audit.judge("x", "1.0", doc("1.0", [withdrawn])).findings == []
    behind = audit.judge("x", "0.9", doc("1.0", [VULN], {"0.9": [{"yanked": False}]}))
    # the project document's advisories are the latest release's: nothing is said of 0.9
    assert not behind.checked and behind.findings == []


def test_an_installed_yanked_release_is_a_finding() -> None:
    r = audit.judge(
        "x", "0.9", doc("1.0", [], {"0.9": [{"yanked": True, "yanked_reason": "broken wheel"}]})
    )
    assert r.findings == ["YANKED-x-0.9: yanked on PyPI (broken wheel)"]


def test_not_on_pypi_is_reported_not_failed() -> None:
    r = audit.judge("private-pkg", "1.0", None)
    assert r.error == "not on PyPI" and audit.report([r], {}) == 0
