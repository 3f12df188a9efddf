"""A local Spark Connect server started from the installed pyspark package (tests, benchmarks,
trying ``STRATUS_ENGINE=spark`` on one machine).

pyspark 4 ships Spark itself (``pyspark/bin/spark-submit``, ``pyspark/jars``) including the
Spark Connect server jar, so no separate Spark download is needed; Java 17 or later is. The
server binds to 127.0.0.1 only and keeps its warehouse, scratch space and log in ``workdir``.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"


class SparkServerError(RuntimeError):
    """The server could not be started; the message says why (and shows its log's tail)."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pyspark_home() -> Path:
    spec = importlib.util.find_spec("pyspark")
    if spec is None or spec.origin is None:
        raise SparkServerError("pyspark is not installed: pip install 'stratus[spark]'")
    return Path(spec.origin).parent


def java_home() -> str:
    if os.environ.get("JAVA_HOME"):
        return os.environ["JAVA_HOME"]
    java = shutil.which("java")
    if java is None:
        raise SparkServerError("Java 17+ is needed for Spark: no `java` on PATH, JAVA_HOME unset")
    return str(Path(java).resolve().parent.parent)


class LocalSparkConnect:
    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        driver_memory: str = "1g",
        conf: dict[str, str] | None = None,
        startup_timeout: float = 180.0,
    ) -> None:
        self.workdir = workdir
        self.port = port or _free_port()
        self.driver_memory = driver_memory
        self.conf = conf or {}
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "spark-connect.log"
        self.startup_seconds: float | None = None

    @property
    def remote(self) -> str:
        return f"sc://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        home = pyspark_home()
        submit = home / "bin" / "spark-submit"
        if not submit.exists():
            raise SparkServerError(f"{submit} not found: is pyspark installed completely?")
        if not list((home / "jars").glob("spark-connect_*.jar")):
            raise SparkServerError(
                f"no Spark Connect server jar in {home / 'jars'} (pyspark 4 bundles one)"
            )
        conf = {
            "spark.connect.grpc.binding.address": "127.0.0.1",
            "spark.connect.grpc.binding.port": str(self.port),
            "spark.driver.host": "127.0.0.1",
            "spark.driver.bindAddress": "127.0.0.1",
            "spark.ui.enabled": "false",
            "spark.sql.warehouse.dir": str(self.workdir / "warehouse"),
            "spark.local.dir": str(self.workdir / "scratch"),
            **self.conf,
        }
        cmd = [str(submit), "--class", SERVER_CLASS, "--driver-memory", self.driver_memory]
        for key, value in conf.items():
            cmd += ["--conf", f"{key}={value}"]
        return [*cmd, "spark-internal"]

    def start(self) -> LocalSparkConnect:
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "SPARK_HOME": str(pyspark_home()),
            "JAVA_HOME": java_home(),
            "SPARK_LOCAL_IP": "127.0.0.1",
            "PYSPARK_PYTHON": sys.executable,
        }
        t0 = time.monotonic()
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                self.command(),
                cwd=self.workdir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its JVM goes with it on stop()
            )
        deadline = t0 + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SparkServerError(
                    f"the Spark Connect server exited with {self.proc.returncode}:\n{self.tail()}"
                )
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    self.startup_seconds = time.monotonic() - t0
                    return self
            time.sleep(0.25)
        self.stop()
        raise SparkServerError(
            f"the Spark Connect server did not listen on 127.0.0.1:{self.port} within "
            f"{self.startup_timeout:.0f}s:\n{self.tail()}"
        )

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(text[-lines:])

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def __enter__(self) -> LocalSparkConnect:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()
