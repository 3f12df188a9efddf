"""WSGI entry point for gunicorn: ``gunicorn stratus.api.wsgi:app``."""

from stratus.api import create_app
from stratus.api.state import EXTENSION
from stratus.lakehouse.maintenance import MaintenanceScheduler

app = create_app()
_stratus = app.extensions[EXTENSION]
# compacts the audit and lineage tables every STRATUS_MAINTENANCE_INTERVAL_HOURS (one process)
MaintenanceScheduler(
    _stratus.lakehouse, _stratus.settings.home, _stratus.settings.maintenance_interval_hours
).start()
