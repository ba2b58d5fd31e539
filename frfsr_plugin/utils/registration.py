"""Suffix-based module discovery, as BasicSR does for its own packages."""
import importlib
import os
from os import path as osp


def import_modules_with_suffix(package_name, package_file, suffix):
    """Import every ``*<suffix>.py`` module next to ``package_file`` so that their registry decorators run.

    Args:
        package_name (str): Dotted name of the package, e.g. ``'frfsr_plugin.archs'``.
        package_file (str): ``__file__`` of the package's ``__init__.py``.
        suffix (str): File-name suffix without extension, e.g. ``'_arch'``.

    Returns:
        list[module]: The imported modules, sorted by file name.
    """
    folder = osp.dirname(osp.abspath(package_file))
    names = sorted(osp.splitext(f)[0] for f in os.listdir(folder) if f.endswith(f'{suffix}.py'))
    return [importlib.import_module(f'{package_name}.{name}') for name in names]
