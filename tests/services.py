"""Real services for the tests: Debian's PostgreSQL and redis-server, each on a free port.

The Makefile installs them with apt when missing (``make services``). PostgreSQL refuses to run
as root, so under uid 0 its programs run as the ``postgres`` system user (``runuser``) on a data
directory owned by that user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_binary(name: str, pattern: str | None = None) -> str | None:
    """``name`` on PATH, else the newest of the version directories ``pattern`` matches."""
    found = shutil.which(name)
    if found:
        return found
    if pattern is None:
        return None

    def version(path: str) -> tuple[int, ...]:
        parts = [p for p in Path(path).parts if p.isdigit()]
        return tuple(int(p) for p in parts)

    candidates = sorted(glob.glob(pattern.format(name=name)), key=version, reverse=True)
    return candidates[0] if candidates else None


def _pg(name: str) -> str:
    binary = find_binary(name, "/usr/lib/postgresql/*/bin/{name}")
    if binary is None:
        raise RuntimeError(
            f"PostgreSQL's {name} not found (PATH, /usr/lib/postgresql/*/bin): run `make test`, "
            "which installs Debian's postgresql package"
        )
    return binary


@dataclass
class Postgres:
    """A throw-away PostgreSQL cluster: trust authentication on 127.0.0.1 only."""

    datadir: Path
    port: int
    as_user: list[str]
    user: str = "stratus"

    @classmethod
    def start(cls) -> Postgres:
        as_user: list[str] = []
        # /tmp, not pytest's 0700 tmp_path: the postgres user must reach its data directory
        base = Path(tempfile.mkdtemp(prefix="stratus-pg-"))
        datadir = base / "data"
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            owner = pwd.getpwnam("postgres" if _has_user("postgres") else "nobody")
            os.chown(base, owner.pw_uid, owner.pw_gid)
            as_user = ["runuser", "-u", owner.pw_name, "--"]
        port = _free_port()
        subprocess.run(
            [
                *as_user,
                _pg("initdb"),
                "-D",
                str(datadir),
                "-U",
                "stratus",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        server = cls(datadir=datadir, port=port, as_user=as_user)
        options = (
            f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={base} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=400 -c shared_buffers=32MB"
        )
        subprocess.run(
            [
                *as_user,
                _pg("pg_ctl"),
                "-D",
                str(datadir),
                "-l",
                str(base / "log"),
                "-w",
                "-t",
                "60",
                "-o",
                options,
                "start",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        return server

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{database}"

    def create_database(self, prefix: str = "t") -> str:
        """A new, empty database; returns its SQLAlchemy URL."""
        import psycopg

        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        dsn = f"host=127.0.0.1 port={self.port} user={self.user} dbname=postgres"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')  # a generated identifier, not input
        return self.url(name)

    def stop(self) -> None:
        subprocess.run(
            [*self.as_user, _pg("pg_ctl"), "-D", str(self.datadir), "-m", "fast", "-w", "stop"],
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        shutil.rmtree(self.datadir.parent, ignore_errors=True)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@dataclass
class Redis:
    """redis-server in the foreground on a free port, without persistence."""

    proc: subprocess.Popen[bytes]
    port: int

    @classmethod
    def start(cls) -> Redis:
        binary = find_binary("redis-server")
        if binary is None:
            raise RuntimeError(
                "redis-server not found: run `make test`, which installs Debian's redis-server"
            )
        port = _free_port()
        proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return cls(proc=proc, port=port)
            time.sleep(0.05)
        proc.kill()
        raise RuntimeError(f"redis-server did not listen on {port}")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
