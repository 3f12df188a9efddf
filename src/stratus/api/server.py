"""gunicorn in-process: each worker builds its own app after the fork (DuckDB is not fork-safe)."""

from __future__ import annotations

import gc
import logging
import os
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger

from stratus.config import Settings

log = logging.getLogger(__name__)
SIGNED_FILES = "/delta-sharing/files/"
# request atoms that may carry credentials or PII: never available to the access log format
_SECRET_ATOMS = ("r", "q", "f", "{authorization}i", "{cookie}i", "{referer}i")


class AccessLogger(Logger):
    """gunicorn's logger, minus secrets: Delta Sharing's signed file URLs (the path is the
    credential) become ``/delta-sharing/files/<signed>``, and the request line, query string,
    referrer, Authorization and Cookie are blanked whatever the format names."""

    def atoms(self, resp: Any, req: Any, environ: Any, request_time: Any) -> dict[str, Any]:
        atoms: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        path = str(atoms.get("U") or "")
        if path.startswith(SIGNED_FILES):
            atoms["U"] = SIGNED_FILES + "<signed>"
        for key in _SECRET_ATOMS:
            if key in atoms:
                atoms[key] = "-"
        return atoms


class _Gunicorn(BaseApplication):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        super().__init__()

    def load_config(self) -> None:
        options: dict[str, Any] = {
            "bind": f"{self.settings.host}:{self.settings.port}",
            "workers": self.settings.workers,
            "threads": 4,
            "worker_class": "gthread",
            "preload_app": False,
            "timeout": 60,
            "graceful_timeout": 20,
            "accesslog": "-" if self.settings.access_log else None,
            # the path without the query string: filters may carry PII (?email=...)
            "access_log_format": '%(h)s %(l)s %(u)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s "%(a)s"',
            "logger_class": AccessLogger,
            "loglevel": self.settings.log_level.lower(),
            # no control socket in $HOME: the container user has no writable home
            "control_socket_disable": True,
        }
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from stratus.api import create_app

        app = create_app(settings=self.settings)
        # the objects made at start-up (modules, metastore, app) live as long as the worker:
        # out of the collector's sight, so its full passes stay short (tail latency)
        gc.collect()
        gc.freeze()
        return app


class StartupError(RuntimeError):
    """Migrations or the built-in securables could not be set up: nothing is served."""


def prepare(settings: Settings) -> None:
    """Migrations and built-in securables, once, before gunicorn forks its workers: done in a
    forked child, so the master never holds a database connection or delta-rs's runtime (neither
    survives a fork). Under the metastore's start-up lock: a second instance starting at the same
    time waits here, then finds the work done. Workers still check (cheaply, without writing)."""
    pid = os.fork()
    if pid == 0:  # the child: do the work, report by exit code, never return into click
        code = 1
        try:
            from stratus.context import Stratus

            stratus = Stratus.from_settings(settings)
            try:
                stratus.bootstrap()
            finally:
                stratus.close()
            code = 0
        except BaseException:
            log.exception("start-up (migrations, built-in securables) failed")
        finally:
            logging.shutdown()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise StartupError(f"start-up failed (exit code {code}); see the log above")


def run_gunicorn(settings: Settings) -> None:
    prepare(settings)
    _Gunicorn(settings).run()
