"""Errors hooktrain raises. Each message names the thing that is wrong and how to fix it."""

from __future__ import annotations


class HooktrainError(Exception):
    """Base class of every error hooktrain raises on purpose."""


class ConfigError(HooktrainError, ValueError):
    """A bad training argument, config-file key or plugin setting."""


class PluginError(HooktrainError):
    """A plugin that cannot be used: unknown name, bad hook, failed import."""


class HookNameError(PluginError):
    """A plugin implements a hook that does not exist (a misspelling such as ``on_stepend``)."""


class CheckpointError(HooktrainError):
    """A checkpoint that is missing, incomplete, corrupt or not a hooktrain checkpoint."""


class TrainingTerminated(Exception):
    """SIGTERM arrived during training (``torchrun`` stopping workers, a preempted job).

    Raised from the signal handler so ``on_exception`` fires and trackers close their runs; not a
    ``HooktrainError``, since nothing is wrong with the run's setup.
    """
