"""Access to the app's :class:`stratus.context.Stratus` from request handlers."""

from __future__ import annotations

from flask import current_app

from stratus.context import Stratus

EXTENSION = "stratus"


def platform() -> Stratus:
    return current_app.extensions[EXTENSION]
