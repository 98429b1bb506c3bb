"""Importing the heavy modules programs use, before any program: shared by the warm
VM's preloaded Python (aleph_preload) and the process driver's fork server."""

import importlib


def preimport(modules: list[str]) -> list[str]:
    """Imports each module that is installed; returns the names that loaded."""
    loaded = []
    for name in modules:
        try:
            importlib.import_module(name)
            loaded.append(name)
        except ImportError:
            pass  # not installed here: programs that need it import it themselves
    return loaded
