"""Imports every ``*_arch.py`` module here so that it registers itself in BasicSR's registry."""
from frfsr_plugin.utils.registration import import_modules_with_suffix

_modules = import_modules_with_suffix(__name__, __file__, '_arch')
