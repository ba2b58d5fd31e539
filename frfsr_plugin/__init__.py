"""FRFSR as a BasicSR plugin.

Importing this package first installs the torchvision compatibility alias that basicsr 1.4.2 needs, then registers
every architecture, model, dataset, loss and metric of the plugin in BasicSR's registries.
"""
from frfsr_plugin import _compat  # noqa: F401  (must precede any basicsr import)
from frfsr_plugin import archs, data, losses, metrics, models  # noqa: F401
from frfsr_plugin.version import __version__  # noqa: F401
