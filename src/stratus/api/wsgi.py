"""WSGI entry point for gunicorn: ``gunicorn stratus.api.wsgi:app``."""

from stratus.api import create_app

app = create_app()
