"""Initialisation shared by the reference-based restoration networks (as in C2-Matching and FRFSR)."""
from torch import nn

from frfsr_plugin.ops.deform_conv import PreOffsetModulatedDeformConv


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
