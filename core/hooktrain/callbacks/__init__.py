"""The built-in callbacks, one per file, with Hugging Face's behaviour."""

from hooktrain.callbacks.early_stopping import EarlyStoppingCallback
from hooktrain.callbacks.flow import DefaultFlowCallback
from hooktrain.callbacks.printer import PrinterCallback
from hooktrain.callbacks.progress import ProgressCallback

__all__ = ["DefaultFlowCallback", "EarlyStoppingCallback", "PrinterCallback", "ProgressCallback"]
