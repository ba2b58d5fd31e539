"""`import frfsr_plugin` registers every plugin component in BasicSR's registries without shadowing BasicSR's.

The expected names are read from the package's own source, not from a hand list: every class or function decorated
with ``@<X>_REGISTRY.register()`` anywhere in ``frfsr_plugin``.
"""
import ast
import glob
from os import path as osp

from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, LOSS_REGISTRY, METRIC_REGISTRY, MODEL_REGISTRY

import frfsr_plugin

REGISTRIES = {
    'ARCH_REGISTRY': ARCH_REGISTRY,
    'MODEL_REGISTRY': MODEL_REGISTRY,
    'DATASET_REGISTRY': DATASET_REGISTRY,
    'LOSS_REGISTRY': LOSS_REGISTRY,
    'METRIC_REGISTRY': METRIC_REGISTRY
}
PACKAGE_DIR = osp.dirname(osp.abspath(frfsr_plugin.__file__))


def registrations_in_source():
    """(registry name, registered name, module) of every ``@<X>_REGISTRY.register()`` definition in the package."""
    found = []
    for path in sorted(glob.glob(osp.join(PACKAGE_DIR, '**', '*.py'), recursive=True)):
        module = 'frfsr_plugin.' + osp.splitext(osp.relpath(path, PACKAGE_DIR))[0].replace(osp.sep, '.')
        with open(path, encoding='utf-8') as file:
            tree = ast.parse(file.read())
        for node in ast.walk(tree):
            if not isinstance(node, (ast.ClassDef, ast.FunctionDef)):
                continue
            for decorator in node.decorator_list:
                call = decorator.func if isinstance(decorator, ast.Call) else decorator
                if (isinstance(call, ast.Attribute) and call.attr == 'register' and isinstance(call.value, ast.Name)
                        and call.value.id in REGISTRIES):
                    found.append((call.value.id, node.name, module.removesuffix('.__init__')))
    return found


def test_every_decorated_component_is_registered_under_its_own_module():
    found = registrations_in_source()
    assert {registry for registry, _, _ in found} == set(REGISTRIES)  # each registry gets plugin components
    for registry_name, name, module in found:
        registry = REGISTRIES[registry_name]
        assert name in registry, f'{name} ({module}) missing from the {registry._name} registry'
        assert registry.get(name).__module__ == module, name


def test_nothing_else_of_the_plugin_is_registered():
    expected = {(registry, name) for registry, name, _ in registrations_in_source()}
    registered = {(registry_name, name)
                  for registry_name, registry in REGISTRIES.items()
                  for name, obj in registry if obj.__module__.startswith('frfsr_plugin.')}
    assert registered == expected


def test_basicsr_components_are_untouched():
    for registry, name in ((ARCH_REGISTRY, 'RRDBNet'), (MODEL_REGISTRY, 'SRModel'), (MODEL_REGISTRY, 'SRGANModel'),
                           (LOSS_REGISTRY, 'GANLoss'), (METRIC_REGISTRY, 'calculate_psnr'), (DATASET_REGISTRY,
                                                                                             'PairedImageDataset')):
        assert registry.get(name).__module__.startswith('basicsr.'), name
