"""Stratus Explorer: the web UI at ``/ui`` (weather, catalog, lineage, jobs, shares, audit).

Server-rendered pages over the REST API's own handlers, behind sign-in sessions; register with
``app.register_blueprint(stratus.ui.bp)``.
"""

from stratus.ui import views as _views  # noqa: F401  (registers the routes on bp)
from stratus.ui.web import bp

__all__ = ["bp"]
