"""Finding the user's ``pgq.App`` from a ``module:attribute`` path."""

from __future__ import annotations

import importlib
import os
import sys

from pgq.app import App
from pgq.errors import ConfigurationError


def load_app(path: str) -> App:
    """Import ``module:attribute`` (or ``module``, which must hold one App) and return the App."""
    if not path or path.startswith(":") or path.count(":") > 1:
        raise ConfigurationError(f"app path {path!r} is not module:attribute, e.g. myapp.tasks:app")
    module_name, _, attribute = path.partition(":")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` would: the app lives in the current folder
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise ConfigurationError(
                f"cannot import {module_name!r} (no module named {exc.name!r}); run from the folder that "
                "holds it, or set PYTHONPATH"
            ) from None
        raise ConfigurationError(f"importing {module_name!r} failed: {exc}") from None
    except Exception as exc:
        raise ConfigurationError(f"importing {module_name!r} failed: {type(exc).__name__}: {exc}") from None
    if attribute:
        if not hasattr(module, attribute):
            raise ConfigurationError(f"module {module_name!r} has no attribute {attribute!r}")
        app = getattr(module, attribute)
        if not isinstance(app, App):
            raise ConfigurationError(f"{path} is a {type(app).__name__}, not a pgq.App")
        return app
    apps = {name: value for name, value in vars(module).items() if isinstance(value, App)}
    if len(apps) != 1:
        found = ", ".join(sorted(apps)) or "none"
        raise ConfigurationError(
            f"module {module_name!r} must hold exactly one pgq.App (found {found}); name it as {module_name}:NAME"
        )
    return next(iter(apps.values()))
