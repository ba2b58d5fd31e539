"""Reading a public checkpoint, renaming it to our names, checking it against the target network, and writing it."""
from dataclasses import dataclass

import torch
import yaml

from frfsr_plugin.conversion.renames import rename_key
from frfsr_plugin.conversion.sources import get_source
from frfsr_plugin.utils.checkpoint import (PretrainedWeightsError, load_state_dict_checked, read_state_dict,
                                           write_atomically)
from frfsr_plugin.utils.errors import BadFileError, OptionError


def _drop_constant_buffers(source, state_dict, origin):
    """Check the source's constant buffers present in ``state_dict`` and return the dict without them."""
    for key, expected in source.constant_buffers.items():
        value = state_dict.get(key)
        if value is not None and (value.numel() != len(expected) or not torch.allclose(
                value.double().flatten(), torch.tensor(expected, dtype=torch.float64))):
            raise BadFileError(f"{origin}: '{key}' is {value.flatten().tolist()}, but "
                               f'{source.network.__name__} hard-codes {list(expected)}; it cannot hold these weights.')
    return {key: value for key, value in state_dict.items() if key not in source.constant_buffers}


def rename_state_dict(source, state_dict, origin='checkpoint'):
    """Rename a source state dict to our names (keys no rule matches are kept, so strict loading reports them).

    Args:
        source (CheckpointSource): Format of ``state_dict``.
        state_dict (dict[str, Tensor]): Weights in the source's naming, without ``module.`` prefixes.
        origin (str): Where the weights come from, for messages.

    Returns:
        tuple[dict[str, Tensor], str]: The renamed state dict and the name of the naming that was recognised.
    """
    state_dict = _drop_constant_buffers(source, state_dict, origin)

    def renamed_count(item):
        return sum(rename_key(key, item[1]) is not None for key in state_dict)

    naming, renames = max(source.namings.items(), key=renamed_count)  # max keeps the first of equal counts
    converted, origins = {}, {}
    for key, value in state_dict.items():
        new_key = rename_key(key, renames) or key
        if new_key in converted:
            raise BadFileError(f"{origin}: '{origins[new_key]}' and '{key}' both become '{new_key}'.")
        converted[new_key], origins[new_key] = value, key
    return converted, naming


def to_source_naming(source, state_dict, naming=None):
    """Inverse of :func:`rename_state_dict`: our names -> the source's (with its constant buffers).

    Args:
        source (CheckpointSource): Target format.
        state_dict (dict[str, Tensor]): Weights of ``source.network``.
        naming (str | None): One of ``source.namings``. Default: the first.

    Returns:
        dict[str, Tensor]: The weights under the source's names.
    """
    renames = tuple(rename.inverted() for rename in source.namings[naming or next(iter(source.namings))])
    converted = {}
    for key, value in state_dict.items():
        new_key = rename_key(key, renames)
        if new_key is None:
            raise KeyError(f'{source.name}: no rename for our parameter {key!r}.')
        converted[new_key] = value
    converted.update({key: torch.tensor(values).view(1, -1, 1, 1) for key, values in source.constant_buffers.items()})
    return converted


def parse_arch_options(items):
    """Parse ``key=value`` items (values as YAML scalars: ``16``, ``false``, ``pytorch``).

    Args:
        items (Sequence[str]): Items from the command line.

    Returns:
        dict: Constructor arguments.
    """
    options = {}
    for item in items:
        key, sep, value = item.partition('=')
        if not sep or not key.strip():
            raise OptionError(f'--arch-options: expected key=value, got {item!r} (give INPUT and OUTPUT before '
                              '--arch-options).')
        options[key.strip()] = yaml.safe_load(value)
    return options


def build_target_network(source, arch_options=None):
    """Build ``source.network`` with its default sizes, ``arch_options`` and the fixed options (random init).

    Args:
        source (CheckpointSource): The source whose target network is built.
        arch_options (dict | None): Constructor arguments other than the defaults (e.g. ``{'num_feat': 32}``).

    Returns:
        nn.Module: The network.
    """
    arch_options = dict(arch_options or {})
    name = source.network.__name__
    fixed = sorted(set(arch_options) & set(source.fixed_options))
    if fixed:
        raise OptionError(f'--arch-options: {", ".join(fixed)} of {name} is set by the converter.')
    try:
        return source.network(**arch_options, **source.fixed_options)
    except (TypeError, ValueError) as error:
        raise OptionError(f'--arch-options {arch_options} do not fit {name}: {error}') from error


def _fit_into(network, state_dict, origin):
    """Load ``state_dict`` strictly; on mismatch raise one line naming the keys (plus a hint for shape errors)."""
    own = network.state_dict()
    try:
        load_state_dict_checked(network, state_dict, origin)
    except PretrainedWeightsError as error:
        if any(key in state_dict and state_dict[key].shape != value.shape for key, value in own.items()):
            raise PretrainedWeightsError(f'{error}. If the checkpoint has sizes other than the defaults, give them '
                                         'with --arch-options (e.g. num_feat=32).') from error
        raise


def _save(obj, path):
    """``torch.save`` atomically (no partial files), with a one-line error."""
    try:
        write_atomically(path, lambda staged: torch.save(obj, staged))
    except (OSError, RuntimeError) as error:  # torch.save reports a full disk as RuntimeError
        raise BadFileError(f"cannot write the converted checkpoint '{path}': {error}") from error


@dataclass(frozen=True)
class ConversionResult:
    """Summary of a written checkpoint: target network class, recognised source naming, tensor and parameter counts."""
    network: str
    naming: str
    num_tensors: int
    num_params: int


def convert_checkpoint(source_name, input_path, output_path, arch_options=None, param_key='params_ema'):
    """Convert a public checkpoint into a BasicSR checkpoint ``{'params': state_dict}`` of our network.

    The renamed weights are loaded strictly into the target network built with ``arch_options``; the output file is
    written (atomically) only if they fit.

    Args:
        source_name (str): One of :data:`SOURCES`.
        input_path (str): Source checkpoint.
        output_path (str): Converted checkpoint.
        arch_options (dict | None): Non-default constructor arguments of the target network.
        param_key (str): State-dict key in BasicSR checkpoints (:func:`~frfsr_plugin.utils.checkpoint.read_state_dict`).

    Returns:
        ConversionResult: What was written.
    """
    source = get_source(source_name)
    network = build_target_network(source, arch_options)
    origin = f"'{input_path}' (--source {source.name})"
    state_dict = read_state_dict(input_path, param_key, f"input checkpoint '{input_path}' not found.")
    converted, naming = rename_state_dict(source, state_dict, origin)
    _fit_into(network, converted, origin)
    params = network.state_dict()
    _save({'params': params}, output_path)
    return ConversionResult(type(network).__name__, naming, len(params), sum(p.numel() for p in network.parameters()))
