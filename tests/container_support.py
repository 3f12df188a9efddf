"""Podman helpers for tests/test_container_run.py: build the image, run it, clean up after.

Podman on these machines (see ``../shared/docs/containers-here.md``): no registry pulls (the base
image is made with mmdebstrap and imported, by ``scripts/container-test-prereqs.sh``), builds with
``--isolation chroot``, containers with ``--runtime runc`` and explicit ulimits.

Everything a test run creates carries the label ``io.stratus.test.owner=<host>:<pid>`` and is
removed when the run ends. A run that died before its cleanup (killed by a timeout, say) leaves
resources whose owner process is gone; the next run removes those, and never touches resources of
a run that is still going (other engineers may run the suite on the same machine).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
PREREQS = ROOT / "scripts" / "container-test-prereqs.sh"
# Shared with the prereqs script: it takes it exclusively while it (re)builds the wheelhouse, a
# build holds it shared so that the wheelhouse cannot change under it.
LOCK_FILE = ROOT / ".tools" / "container-prereqs.lock"
BASE_IMAGE = os.environ.get("STRATUS_BASE_IMAGE", "localhost/stratus-base:local")
IMAGE_REPO = "localhost/stratus-ctest"
OWNER_LABEL = "io.stratus.test.owner"
OWNER = f"{socket.gethostname()}:{os.getpid()}"
# The settings podman needs here: crun fails on the hybrid cgroups, the default rlimits are
# refused, and nproc 4096 starves delta-rs of threads.
RUNTIME = ["--runtime", "runc"]
ULIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=16384:16384"]


class PodmanError(AssertionError):
    """A podman command failed; the message has the command, its exit status and output."""


def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def podman(
    *args: str, timeout: float = 120, check: bool = True, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    cmd = ["podman", *args]
    try:
        proc = subprocess.run(
            cmd, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError:
        raise PodmanError("podman is not installed (scripts/container-test-prereqs.sh)") from None
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        msg = f"`{shlex.join(cmd)}` timed out after {timeout:.0f} s\n{tail(out)}"
        raise PodmanError(msg) from None
    if check and proc.returncode != 0:
        raise PodmanError(
            f"`{shlex.join(cmd)}` exited with {proc.returncode}\n"
            f"stderr:\n{tail(proc.stderr)}\nstdout:\n{tail(proc.stdout)}"
        )
    return proc


def prepare(timeout: float = 900) -> tuple[float, str]:
    """Run the prereqs script (tools, base image, wheelhouse); (seconds, its output)."""
    started = time.monotonic()
    try:
        proc = subprocess.run(
            ["bash", str(PREREQS)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise PodmanError(f"{PREREQS.name} did not finish within {timeout:.0f} s") from None
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise PodmanError(
            f"{PREREQS.relative_to(ROOT)} failed (exit {proc.returncode}): podman, the base image "
            f"{BASE_IMAGE} or the wheelhouse could not be prepared.\n{tail(output)}"
        )
    return time.monotonic() - started, output


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def shared_prereqs_lock() -> Iterator[None]:
    LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
    with LOCK_FILE.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _owner_alive(owner: str) -> bool:
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True  # not ours to judge
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_orphans() -> list[str]:
    """Remove test containers, volumes and images whose owning test process is gone."""
    removed: list[str] = []
    listings = (
        ("container", ["ps", "-a", "--format", "json"], "Labels", "Id"),
        ("volume", ["volume", "ls", "--format", "json"], "Labels", "Name"),
        ("image", ["images", "--format", "json"], "Labels", "Id"),
    )
    for kind, cmd, labels_key, id_key in listings:
        proc = podman(*cmd, "--filter", f"label={OWNER_LABEL}", check=False)
        if proc.returncode != 0 or not proc.stdout.strip():
            continue
        for item in json.loads(proc.stdout):
            owner = (item.get(labels_key) or {}).get(OWNER_LABEL, "")
            if owner and not _owner_alive(owner):
                rm = {"container": ["rm", "-f"], "volume": ["volume", "rm", "-f"]}
                podman(*rm.get(kind, ["rmi", "-f"]), item[id_key], check=False)
                removed.append(f"{kind} {item[id_key][:12]}")
    return removed


@dataclass
class Session:
    """The podman resources of one test run, removed by :meth:`cleanup`."""

    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    images: list[str] = field(default_factory=list)
    containers: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{OWNER_LABEL}={OWNER}"

    def build(self, timeout: float = 1200) -> tuple[str, float, str]:
        """Build the project's Dockerfile from the repository; (image, seconds, build log)."""
        image = f"{IMAGE_REPO}:{self.run_id}"
        self.images.append(image)
        started = time.monotonic()
        with shared_prereqs_lock():
            proc = podman(
                "build",
                "--isolation",
                "chroot",
                # no layer cache: every run builds what is in the tree now, and leaves no
                # intermediate images behind (the base image and wheelhouse are the caches)
                "--layers=false",
                "--force-rm",
                "--pull=never",
                "--build-arg",
                f"BASE_IMAGE={BASE_IMAGE}",
                "--label",
                self.label,
                "--tag",
                image,
                "--file",
                str(ROOT / "Dockerfile"),
                str(ROOT),
                timeout=timeout,
                check=False,
            )
        seconds = time.monotonic() - started
        log = proc.stdout + proc.stderr
        if proc.returncode != 0:
            raise PodmanError(
                f"podman build of the project's Dockerfile failed (exit {proc.returncode}) "
                f"after {seconds:.0f} s:\n{tail(log, 60)}"
            )
        return image, seconds, log

    def volume(self) -> str:
        name = f"stratus-ctest-{self.run_id}-data"
        podman("volume", "create", "--label", self.label, name)
        self.volumes.append(name)
        return name

    def run(self, image: str, volume: str, port: int, env: dict[str, str] | None = None) -> str:
        name = f"stratus-ctest-{self.run_id}-{len(self.containers) + 1}"
        self.containers.append(name)
        env_args: list[str] = []
        for key, value in (env or {}).items():
            env_args += ["--env", f"{key}={value}"]
        podman(
            *RUNTIME,
            "run",
            "--detach",
            "--name",
            name,
            "--label",
            self.label,
            *ULIMITS,
            "--publish",
            f"127.0.0.1:{port}:8080",
            "--volume",
            f"{volume}:/data",
            *env_args,
            image,
        )
        return name

    def cleanup(self) -> list[str]:
        """Remove what this run created; returns what is still there afterwards."""
        for container in self.containers:
            podman("stop", "--time", "10", container, check=False, timeout=120)
        problems: list[str] = []
        for exists, remove, items in (
            (["container", "exists"], ["rm", "--force"], self.containers),
            (["volume", "exists"], ["volume", "rm", "--force"], self.volumes),
            (["image", "exists"], ["rmi", "--force"], self.images),
        ):
            for item in items:
                # podman can report a container that stopped meanwhile as "improper state":
                # what counts is whether it is gone
                for _ in range(3):
                    proc = podman(*remove, item, check=False, timeout=120)
                    if podman(*exists, item, check=False).returncode != 0:
                        break
                    time.sleep(1)
                else:
                    problems.append(f"podman {' '.join(remove)} {item}: {tail(proc.stderr, 3)}")
        return problems


def exec_(container: str, *cmd: str, stdin: str | None = None, timeout: float = 120) -> str:
    """Run a command in the container (as its default, non-root user); its stdout."""
    interactive = ["--interactive"] if stdin is not None else []
    return podman("exec", *interactive, container, *cmd, stdin=stdin, timeout=timeout).stdout


def inspect(container: str) -> dict[str, Any]:
    data: list[dict[str, Any]] = json.loads(podman("inspect", container).stdout)
    return data[0]


def logs(container: str, lines: int = 60) -> str:
    proc = podman("logs", "--tail", str(lines), container, check=False)
    return (proc.stdout + proc.stderr).rstrip()


def wait_for_health(base_url: str, container: str, timeout: float = 300) -> float:
    """Poll GET /health until it answers 200; fail early if the container exits."""
    started = time.monotonic()
    last = "no answer yet"
    while time.monotonic() - started < timeout:
        try:
            resp = requests.get(f"{base_url}/health", timeout=5)
            if resp.status_code == 200:
                return time.monotonic() - started
            last = f"HTTP {resp.status_code}: {resp.text[:200]}"
        except requests.RequestException as exc:
            last = type(exc).__name__
        state = inspect(container)["State"]
        if not state.get("Running"):
            raise PodmanError(
                f"container {container} exited (status {state.get('ExitCode')}) before /health "
                f"answered; its log:\n{logs(container)}"
            )
        time.sleep(0.5)
    raise PodmanError(
        f"{base_url}/health did not answer 200 within {timeout:.0f} s (last: {last}); "
        f"the container's log:\n{logs(container)}"
    )


def process_statuses(container: str) -> dict[int, dict[str, str]]:
    """``/proc/<pid>/status`` of every process in the container, as {pid: {field: value}}."""
    script = 'for d in /proc/[0-9]*; do echo "Pid-Dir: ${d#/proc/}"; cat "$d/status"; done'
    out = exec_(container, "sh", "-c", script + " 2>/dev/null; true")
    result: dict[int, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in out.splitlines():
        key, _, value = line.partition(":")
        if key == "Pid-Dir":
            current = result.setdefault(int(value.strip()), {})
        elif current is not None and value:
            current[key.strip()] = value.strip()
    return {pid: st for pid, st in result.items() if "Uid" in st}


def ids(status_field: str) -> Sequence[int]:
    """``Uid:``/``Gid:`` of /proc/<pid>/status: real, effective, saved, filesystem."""
    return [int(x) for x in status_field.split()]
