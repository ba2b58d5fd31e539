"""Helpers shared by the reference-based restoration networks: initialisation (as in C2-Matching and FRFSR) and
their inference memory."""
from torch import nn

from frfsr_plugin.ops.deform_conv import PreOffsetModulatedDeformConv

DEFAULT_BYTES_PER_PIXEL = 9400  # a tileable generator without inference_bytes_per_pixel(): FRFSRNet's defaults


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
