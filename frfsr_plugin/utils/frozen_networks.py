"""Frozen networks (encoder, correspondence, SIFE, Net1, the student's teacher): built from their options section in
eval mode without gradients, never wrapped in DDP, trained or saved, and loaded strictly from a checkpoint."""
from basicsr.archs import build_network

from frfsr_plugin.utils.checkpoint import load_checkpoint
from frfsr_plugin.utils.errors import MissingOptionError, UserInputError


def build_frozen_network(opt, key, device, required_by=None):
    """The network of ``opt[key]`` on ``device``, in eval mode with ``requires_grad`` off.

    Args:
        opt (dict): Parsed options.
        key (str): Options section, e.g. ``'network_map'``.
        device (torch.device | str): Where the network runs.
        required_by (str | None): Who needs it, named in the error when ``key`` is absent; None: optional.

    Returns:
        nn.Module | None: The network, or None when ``key`` is absent and optional.
    """
    if key not in opt:
        if required_by is not None:
            raise UserInputError(f'Option `{key}` is missing: {required_by} needs it.')
        return None
    return build_network(opt[key]).to(device).eval().requires_grad_(False)


def load_frozen_weights(net, opt, name, what):
    """Load ``net`` strictly from ``path.pretrain_network_<name>`` (key ``path.param_key_<name>``, default ``params``).

    Args:
        net (nn.Module): The frozen network.
        opt (dict): Parsed options.
        name (str): Network name, e.g. ``'stage1'`` or ``'teacher'``.
        what (str): The rest of the error when the path is absent, e.g. ``'the student needs the teacher checkpoint'``.
    """
    path_opt = opt.get('path') or {}
    load_path = path_opt.get(f'pretrain_network_{name}')
    if load_path is None:
        raise MissingOptionError(f'path.pretrain_network_{name} is missing: {what}')
    load_checkpoint(net, load_path, path_opt.get(f'param_key_{name}', 'params'))
