"""Helpers shared by the reference-based restoration networks: initialisation (as in C2-Matching and FRFSR), their
inference memory, wrapper-free access, and submodule features taken through hooks (feature reuse)."""
import contextlib

from torch import nn

from frfsr_plugin.ops.deform_conv import PreOffsetModulatedDeformConv
from frfsr_plugin.utils.errors import OptionError
from frfsr_plugin.utils.speed import uncompiled

DEFAULT_BYTES_PER_PIXEL = 6300  # a tileable generator without inference_bytes_per_pixel(): FRFSRNet's defaults
HOOK_PORTS = ('input', 'output')  # which side of a submodule a feature is taken from


def init_restoration_weights(network, std=0.02):
    """Every conv N(0, std) with zero bias; deformable kernels keep U(+-1/sqrt(9C)); offset/mask convs zero.

    Args:
        network (nn.Module): Network initialised in place.
        std (float): Standard deviation of conv weights. Default: 0.02.
    """
    for module in network.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.normal_(module.weight, 0.0, std)
            nn.init.zeros_(module.bias)
    for module in network.modules():
        if isinstance(module, PreOffsetModulatedDeformConv):
            module.zero_offset_branch()


def generator_bytes_per_pixel(net):
    """Peak bytes per HR output pixel of one forward of ``net`` (its ``inference_bytes_per_pixel()`` if defined)."""
    estimate = getattr(net, 'inference_bytes_per_pixel', None)
    return estimate() if estimate is not None else DEFAULT_BYTES_PER_PIXEL


def bare_network(net):
    """The module inside ``torch.compile``, DataParallel and DistributedDataParallel wrappers (``net`` if none)."""
    net = uncompiled(net)
    if isinstance(net, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        net = net.module
    return net


def get_submodule_checked(network, path, option):
    """``network.get_submodule(path)`` with an error that names the option and lists valid top-level names."""
    try:
        return network.get_submodule(path)
    except AttributeError as error:
        children = ', '.join(name for name, _ in network.named_children())
        raise OptionError(f'{option}: {type(network).__name__} has no submodule {path!r} (top level: {children}).') \
            from error


@contextlib.contextmanager
def captured_feature(module, port='output'):
    """Record the input (first positional argument) or the output of ``module`` while the ``with`` block runs.

    The hook is registered on entry and removed on exit, so nothing stays on the module; this works for any
    registered arch without changing its forward.

    Args:
        module (nn.Module): The submodule, e.g. ``net.aggregate_up_large``.
        port (str): ``'input'`` or ``'output'``. Default: ``'output'``.

    Yields:
        list[Tensor]: The recorded features, one per call of ``module`` in the block.
    """
    captured = []
    if port == 'input':
        handle = module.register_forward_pre_hook(lambda _, args: captured.append(args[0]))
    else:
        handle = module.register_forward_hook(lambda _, args, output: captured.append(output))
    try:
        yield captured
    finally:
        handle.remove()
