"""Network checkpoints on local files only (nothing is ever downloaded): the one reader of weights files, strict
loading that names every mismatch, the ``pretrained`` option of frozen networks, and the one atomic writer."""
import contextlib
import os
from os import path as osp

import torch
from basicsr.utils import get_root_logger

from frfsr_plugin.utils.errors import BadFileError, UserInputError

DDP_PREFIX = 'module.'
STAGING_FOLDER = '.incomplete'  # next to the final file: same file system, so os.replace is atomic


class PretrainedWeightsError(UserInputError):
    """A weights file is missing or does not fit the network it is loaded into."""


def resolve_pretrained_option(pretrained, owner, description):
    """Check a ``pretrained`` option: a path to a local weights file, or ``False`` for random init.

    Args:
        pretrained (str | bool | None): The option value.
        owner (str): Who reads the option, used in messages (e.g. ``'FRFSRContrastiveEncoder'``).
        description (str): What weights belong in the file.

    Returns:
        str | None: The expanded path, or None for random initialisation.
    """
    if pretrained is False:
        return None
    if not isinstance(pretrained, (str, os.PathLike)):
        raise PretrainedWeightsError(f'{owner}: `pretrained` must be the path of a local file with {description}, or '
                                     f'false for random init (tests only); got {pretrained!r}.')
    path = os.path.expanduser(os.fspath(pretrained))
    if not os.path.isfile(path):
        raise PretrainedWeightsError(f"{owner}: weights file '{path}' not found. It should contain {description}. "
                                     'Nothing is downloaded automatically; put the file there or fix the path.')
    return path


def read_state_dict(path, param_key='params', missing_message=None):
    """The state dict of a plain or BasicSR-style (``{'params': ..., 'params_ema': ...}``) checkpoint file.

    Args:
        path (str): Checkpoint file.
        param_key (str): Key of the state dict in BasicSR checkpoints; as in BasicSR, ``'params'`` is used when the
            file lacks it (e.g. ``params_ema`` of a run without EMA), and the file's own dict when it has neither (a
            plain state dict). Default: ``'params'``.
        missing_message (str | None): The error when ``path`` is not a file. Default: ``weights file '<path>' not
            found.``

    Returns:
        dict[str, Tensor]: The state dict, DDP's ``module.`` prefixes stripped.

    Raises:
        PretrainedWeightsError: The file is missing or unreadable.
        BadFileError: It holds something other than tensors (a training state, for instance).
    """
    if not osp.isfile(path):
        raise PretrainedWeightsError(missing_message or f"weights file '{path}' not found.")
    try:
        state = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as error:  # torch raises many types for unreadable files
        raise PretrainedWeightsError(f"Cannot read weights file '{path}': {error}") from error
    if not isinstance(state, dict):
        raise PretrainedWeightsError(f"Weights file '{path}' does not hold a state dict.")
    state = next((state[key] for key in (param_key, 'params') if isinstance(state.get(key), dict)), state)
    not_tensors = [key for key, value in state.items() if not torch.is_tensor(value)]
    if not_tensors:
        raise BadFileError(f"'{path}' is not a network state dict: entries {', '.join(not_tensors[:5])} are not "
                           'tensors (a training state?).')
    return {key[len(DDP_PREFIX):] if key.startswith(DDP_PREFIX) else key: value for key, value in state.items()}


def load_state_dict_checked(module, state_dict, source, strict=True):
    """Load ``state_dict`` into ``module`` and report mismatches by key name.

    Args:
        module (nn.Module): Destination.
        state_dict (dict[str, Tensor]): Weights.
        source (str): Where the weights come from, for messages.
        strict (bool): If False, keys missing from ``module`` are ignored (a file may hold a larger network),
            but every parameter of ``module`` must be provided. Default: True.
    """
    own = module.state_dict()
    missing = [key for key in own if key not in state_dict]
    unexpected = [key for key in state_dict if key not in own]
    wrong_shape = [
        f'{key}: {tuple(state_dict[key].shape)} vs {tuple(own[key].shape)}' for key in own
        if key in state_dict and state_dict[key].shape != own[key].shape
    ]
    if missing or wrong_shape or (strict and unexpected):
        problems = []
        if missing:
            problems.append(f'missing keys ({len(missing)}): {", ".join(missing[:10])}')
        if strict and unexpected:
            problems.append(f'unexpected keys ({len(unexpected)}): {", ".join(unexpected[:10])}')
        if wrong_shape:
            problems.append(f'shape mismatch (file vs network): {", ".join(wrong_shape[:10])}')
        raise PretrainedWeightsError(f'{type(module).__name__}: weights from {source} do not fit: ' +
                                     '; '.join(problems))
    module.load_state_dict({key: state_dict[key] for key in own})


def load_checkpoint(module, path, param_key='params', missing_message=None):
    """Load a checkpoint file strictly into ``module``, naming every mismatch (:func:`load_state_dict_checked`).

    Args:
        module (nn.Module): Destination (not a DDP or torch.compile wrapper).
        path (str): Checkpoint file.
        param_key (str): See :func:`read_state_dict`. Default: ``'params'``.
        missing_message (str | None): The error when ``path`` is not a file. Default: ``<Class>: checkpoint '<path>'
            not found.``
    """
    source = f"'{path}'"
    missing_message = missing_message or f'{type(module).__name__}: checkpoint {source} not found.'
    load_state_dict_checked(module, read_state_dict(path, param_key, missing_message), source)
    get_root_logger().info(f'Loaded {type(module).__name__} from {source} (strict).')


def load_pretrained(module, pretrained, owner, description, param_key='params', strict=True):
    """Load local weights into ``module`` following a ``pretrained`` option (path, or False for random init).

    Args:
        module (nn.Module): Destination.
        pretrained (str | bool | None): The option value.
        owner (str): Name used in messages.
        description (str): What weights belong in the file.
        param_key (str | None): Key of the state dict in BasicSR checkpoints. Default: ``'params'``.
        strict (bool): See :func:`load_state_dict_checked`. Default: True.

    Returns:
        bool: True if weights were loaded, False for random init.
    """
    path = resolve_pretrained_option(pretrained, owner, description)
    if path is None:
        return False
    load_state_dict_checked(module, read_state_dict(path, param_key), f"'{path}'", strict=strict)
    return True


def write_atomically(path, write):
    """Write a file so that ``path`` holds its previous content or the complete new one, whatever happens meanwhile.

    ``write(staged)`` writes the file to ``staged`` in ``<folder of path>/.incomplete/``, on the same file system,
    which is then renamed to ``path`` with ``os.replace``; a kill at any moment leaves no partial file under ``path``.
    A staged file that ``write`` left after failing is removed, and so is the staging folder once empty. When
    ``write`` writes nothing (BasicSR's savers only warn after failed retries), ``path`` stays as it was.

    Args:
        path (str): The file to write (its folder is created).
        write (callable): ``write(staged_path)``, writing the whole file there.
    """
    staging_dir = osp.join(osp.dirname(osp.abspath(path)), STAGING_FOLDER)
    os.makedirs(staging_dir, exist_ok=True)
    staged = osp.join(staging_dir, osp.basename(path))
    try:
        write(staged)
        if osp.isfile(staged):
            os.replace(staged, path)
    finally:
        if osp.exists(staged):
            os.remove(staged)
        with contextlib.suppress(OSError):  # not empty: another file is being staged
            os.rmdir(staging_dir)
