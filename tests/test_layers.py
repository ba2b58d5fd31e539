"""The package's layers: no module imports from a layer above its own (``docs/design.md``, "Package map").

From the bottom: ``utils``; ``ops`` and ``data``; ``archs``; ``losses`` and ``metrics``; ``restoration`` (the
reference pipeline, tiles, the memory planner, the inferencer) and ``conversion``; ``models``; ``cli`` and the tools.
Imports inside a layer are free. The package root (``frfsr_plugin/__init__.py``, which imports every registering
package) counts as the top layer. Every import statement counts, function-level ones included.
"""
import ast
import glob
from os import path as osp

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
LAYERS = (('utils', '_compat', 'version'), ('ops', 'data'), ('archs', ), ('losses', 'metrics'),
          ('restoration', 'conversion'), ('models', ), ('cli', 'tools', ''))
LAYER_OF = {part: index for index, parts in enumerate(LAYERS) for part in parts}


def layer(module):
    """Layer index of ``frfsr_plugin.<part>...`` (the root ``frfsr_plugin`` itself: the top) or ``tools.<name>``."""
    parts = module.split('.')
    return LAYER_OF[parts[1] if parts[0] == 'frfsr_plugin' and len(parts) > 1 else
                    ('tools' if parts[0] == 'tools' else '')]


def plugin_imports(path, module):
    """The ``frfsr_plugin`` modules that a source file imports, as dotted names."""
    with open(path, encoding='utf-8') as file:
        tree = ast.parse(file.read())
    package = module.rsplit('.', 1)[0] if not path.endswith('__init__.py') else module
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name.split('.')[0] == 'frfsr_plugin')
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:  # relative import
                base = '.'.join(
                    package.split('.')[:len(package.split('.')) - node.level + 1] + ([base] if base else []))
            if base.split('.')[0] != 'frfsr_plugin':
                continue
            if base == 'frfsr_plugin':  # from frfsr_plugin import archs, ...: the named subpackages or modules
                yield from (f'frfsr_plugin.{alias.name}' for alias in node.names)
            else:
                yield base


def source_modules():
    """(path, dotted module name) of every package and tool source file."""
    for path in sorted(glob.glob(osp.join(ROOT, 'frfsr_plugin', '**', '*.py'), recursive=True)):
        name = osp.splitext(osp.relpath(path, ROOT))[0].replace(osp.sep, '.')
        yield path, name.removesuffix('.__init__')
    for path in sorted(glob.glob(osp.join(ROOT, 'tools', '*.py'))):
        yield path, f'tools.{osp.splitext(osp.basename(path))[0]}'


@pytest.mark.parametrize('path, module', list(source_modules()), ids=lambda value: value if '.' in value else '')
def test_no_import_from_a_layer_above(path, module):
    upward = [target for target in plugin_imports(path, module) if layer(target) > layer(module)]
    assert not upward, f'{module} (layer {LAYERS[layer(module)]}) imports from layers above it: {upward}'


def test_every_top_level_part_of_the_package_has_a_layer():
    parts = {osp.splitext(name)[0] for name in map(osp.basename, glob.glob(osp.join(ROOT, 'frfsr_plugin', '*')))}
    assert parts - {'__init__', '__pycache__'} <= set(LAYER_OF)
