"""Reading options YAMLs and importing the plugins they name, with one-line errors for user mistakes.

Plugins are every module of the entry-point group ``basicsr.plugins`` and every module listed under the top-level YAML
key ``plugins:`` (importable from the working directory).
"""
import importlib
import os
import sys
from importlib.metadata import entry_points

import yaml

from frfsr_plugin.utils.errors import UserInputError


def read_options(opt_path):
    """The YAML as a dict, with one-line errors for a missing, unreadable or non-mapping file."""
    if not os.path.isfile(opt_path):
        raise UserInputError(f"option file '{opt_path}' not found.")
    with open(opt_path, encoding='utf-8') as file:
        try:
            opt = yaml.safe_load(file)
        except yaml.YAMLError as error:
            raise UserInputError(f"option file '{opt_path}' is not valid YAML: {error}") from error
    if not isinstance(opt, dict):
        raise UserInputError(f"option file '{opt_path}' must hold a mapping of options.")
    return opt


def read_plugin_list(opt):
    """Module names under the YAML's top-level ``plugins:`` key."""
    plugins = opt.get('plugins') or []
    if isinstance(plugins, str) or not all(isinstance(name, str) for name in plugins):
        raise UserInputError(f'`plugins` must be a list of module names, got {plugins!r}.')
    return plugins


def load_plugins(opt_path):
    """Import installed ``basicsr.plugins`` entry points and the YAML's ``plugins:`` modules.

    Returns:
        dict: The options read from ``opt_path``.
    """
    opt = read_options(opt_path)
    for entry_point in entry_points(group='basicsr.plugins'):
        entry_point.load()
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for module_name in read_plugin_list(opt):
        try:
            importlib.import_module(module_name)
        except ImportError as error:
            raise UserInputError(f"{opt_path}: plugin module '{module_name}' could not be imported: {error}") from error
    return opt
