"""The plugin machinery: manager, dispatcher, TrainerCallback bridge, entry-point discovery."""

from hooktrain.plugins.dispatch import HookDispatcher, PluginFault
from hooktrain.plugins.manager import Band, HooktrainPluginManager, PluginRecord

__all__ = ["Band", "HookDispatcher", "HooktrainPluginManager", "PluginFault", "PluginRecord"]
