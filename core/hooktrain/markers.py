"""The two pluggy markers of the ``hooktrain`` project.

Importing this module costs nothing but pluggy: plugin modules import ``hookimpl`` at their top
without pulling in torch.
"""

from __future__ import annotations

import pluggy

#: The pluggy project name: markers, entry points and the plugin manager all use it.
PROJECT_NAME = "hooktrain"

#: Marks a function of :mod:`hooktrain.hookspecs` as a hook specification.
hookspec = pluggy.HookspecMarker(PROJECT_NAME)

#: Marks a plugin method as the implementation of the hook of the same name.
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

__all__ = ["PROJECT_NAME", "hookimpl", "hookspec"]
