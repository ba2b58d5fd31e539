"""Checks of a BasicSR options YAML before a pipeline starts, so that mistakes end with one line naming the key.

BasicSR reads many options with ``opt[key]`` deep inside its pipelines; a missing one would surface as a bare
``KeyError`` traceback minutes into a run. These checks run first and raise :class:`OptionError` /
:class:`MissingOptionError` instead.
"""
from frfsr_plugin.utils.errors import MissingOptionError, OptionError

# Options that BasicSR 1.4.2's train/test pipelines (and SRModel) read without a default, as dotted paths.
REQUIRED_OPTIONS = {
    'train': ('name', 'model_type', 'num_gpu', 'path', 'network_g', 'datasets', 'datasets.train', 'train',
              'train.total_iter', 'logger', 'logger.print_freq', 'logger.save_checkpoint_freq'),
    'test': ('name', 'model_type', 'num_gpu', 'path', 'network_g', 'datasets', 'val', 'val.save_img'),
}


def lookup(opt, dotted_key):
    """Value of ``a.b.c`` in nested dicts; raises KeyError with the first absent part."""
    value = opt
    for part in dotted_key.split('.'):
        if not isinstance(value, dict) or part not in value:
            raise KeyError(part)
        value = value[part]
    return value


def check_required_options(opt, command, opt_path):
    """Every option the ``command`` pipeline needs is present (``val.val_freq`` too when ``val`` is set in training)."""
    required = list(REQUIRED_OPTIONS[command])
    if command == 'train' and opt.get('val') is not None:
        required += ['val.val_freq', 'val.save_img']
    for key in required:
        try:
            lookup(opt, key)
        except KeyError:
            raise MissingOptionError(f'{opt_path}: option `{key}` is missing; `basicsr {command}` needs it.') from None


def check_forced_options(opt, forced, opt_path):
    """``--force_yml a:b=value`` entries name existing options (BasicSR cannot create keys this way)."""
    for entry in forced:
        keys, equals, _ = entry.partition('=')
        if not equals:
            raise OptionError(f'--force_yml {entry!r}: expected KEY:SUBKEY=VALUE.')
        try:
            lookup(opt, keys.strip().replace(':', '.'))
        except KeyError:
            raise OptionError(f'--force_yml {entry!r}: option `{keys.strip()}` does not exist in {opt_path}.') from None


def registered_types(opt):
    """(option key, registry, type name) for every registry lookup BasicSR will make from these options."""
    from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, LOSS_REGISTRY, METRIC_REGISTRY, MODEL_REGISTRY
    if 'model_type' in opt:
        yield 'model_type', MODEL_REGISTRY, opt['model_type']
    for key, value in opt.items():
        if key.startswith('network_') and isinstance(value, dict):
            yield f'{key}.type', ARCH_REGISTRY, value.get('type')
    for phase, dataset in (opt.get('datasets') or {}).items():
        yield f'datasets.{phase}.type', DATASET_REGISTRY, (dataset or {}).get('type')
    for key, value in (opt.get('train') or {}).items():
        if key.endswith('_opt') and isinstance(value, dict):
            yield f'train.{key}.type', LOSS_REGISTRY, value.get('type')
    for name, metric in ((opt.get('val') or {}).get('metrics') or {}).items():
        yield f'val.metrics.{name}.type', METRIC_REGISTRY, (metric or {}).get('type')


def check_registered_types(opt, opt_path):
    """One clear error for a type that no registry (BasicSR's or a loaded plugin's) knows."""
    for key, registry, name in registered_types(opt):
        if name not in registry and f'{name}_basicsr' not in registry:
            known = ', '.join(sorted(k for k in registry.keys() if not k.endswith('_basicsr')))
            raise OptionError(f'{opt_path}: {key}: unknown type {name!r}; registered: {known}. '
                              'Is the plugin that defines it listed under `plugins:` or installed?')
