"""The plugin machinery: manager, dispatcher, TrainerCallback bridge, entry-point discovery."""

from hooktrain.plugin_host.dispatch import HookDispatcher
from hooktrain.plugin_host.manager import Band, HooktrainPluginManager, PluginFault, PluginRecord
from hooktrain.plugin_host.timings import TimingRow

__all__ = ["Band", "HookDispatcher", "HooktrainPluginManager", "PluginFault", "PluginRecord",
           "TimingRow"]
