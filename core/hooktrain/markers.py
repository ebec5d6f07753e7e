"""The two pluggy markers of the ``hooktrain`` project.

Importing this module costs nothing but pluggy: plugin modules import ``hookimpl`` at their top
without pulling in torch.
"""

from __future__ import annotations

from typing import Any

import pluggy

#: The pluggy project name: markers, entry points and the plugin manager all use it.
PROJECT_NAME = "hooktrain"

#: Marks a function of :mod:`hooktrain.hookspecs` as a hook specification.
hookspec = pluggy.HookspecMarker(PROJECT_NAME)

#: Marks a plugin method as the implementation of the hook of the same name.
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)



def attribute(obj: object, name: str) -> Any:
    """``getattr(obj, name, None)`` that survives attributes whose access raises anything.

    Plugins may hold library objects (flytekit's context raises ``AssertionError`` for a
    missing attribute); inspecting them must not break registration.
    """
    try:
        return getattr(obj, name, None)
    except Exception:  # noqa: BLE001 - any failure just means "not a hook"
        return None


def is_hookimpl(value: object) -> bool:
    """Whether ``value`` carries the ``@hookimpl`` marker (safely, as :func:`attribute`)."""
    return attribute(value, f"{PROJECT_NAME}_impl") is not None


__all__ = ["PROJECT_NAME", "attribute", "hookimpl", "hookspec", "is_hookimpl"]
