"""Compatibility shims that must run before the first ``import basicsr``.

basicsr 1.4.2 (the last release) imports ``torchvision.transforms.functional_tensor``, a module removed in
torchvision 0.17. Its only use is ``rgb_to_grayscale``, which lives in ``torchvision.transforms.functional`` now.
We register an alias module so that ``import basicsr`` works on current torchvision.
"""
import sys
import types

_LEGACY_MODULE = 'torchvision.transforms.functional_tensor'


def install_torchvision_alias():
    """Make ``torchvision.transforms.functional_tensor`` importable (idempotent)."""
    if _LEGACY_MODULE in sys.modules:
        return
    try:
        import torchvision.transforms.functional_tensor  # noqa: F401  (old torchvision still has it)
        return
    except ImportError:
        pass
    from torchvision.transforms import functional
    alias = types.ModuleType(_LEGACY_MODULE)
    alias.rgb_to_grayscale = functional.rgb_to_grayscale
    sys.modules[_LEGACY_MODULE] = alias


install_torchvision_alias()
