"""Resolving `module:attribute` to the ASGI application callable."""

import importlib
import os
import re
import sys
from typing import Any

from .errors import AppLoadError

_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def parse_app_spec(spec: str) -> tuple[str, str]:
    module, colon, attribute = spec.partition(":")
    if not colon or not _DOTTED.fullmatch(module) or not _DOTTED.fullmatch(attribute):
        raise AppLoadError(f"--app must look like module:attribute (e.g. main:app), got {spec!r}")
    return module, attribute


def load_app(spec: str, app_dir: str) -> Any:
    module_name, attribute = parse_app_spec(spec)
    directory = os.path.abspath(app_dir)
    if not os.path.isdir(directory):
        raise AppLoadError(f"--app-dir {app_dir!r} is not a directory")
    sys.path.insert(0, directory)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name == module_name or module_name.startswith(f"{error.name}."):
            raise AppLoadError(f"no module {module_name!r} in {directory}") from None
        raise
    target: Any = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise AppLoadError(f"module {module_name!r} has no attribute {attribute!r}") from None
    if not callable(target):
        raise AppLoadError(f"{spec} is not callable")
    return target
