"""Modulated deformable convolution (DCNv2) with three interchangeable backends.

All take the offset as ``(B, 2 * G * 9, H, W)`` with ``(dy, dx)`` interleaved per 3x3 kernel tap, group major, and the
mask as ``(B, G * 9, H, W)``:

* ``torchvision`` (default): ``torchvision.ops.deform_conv2d``.
* ``mmcv``: ``mmcv.ops.modulated_deform_conv2d``, bit-identical to torchvision; needs mmcv built with its ops.
* ``pytorch``: bilinear sampling with ``grid_sample`` followed by a matrix product. Same forward values up to float
  rounding; faster than torchvision's op on CPU. It also computes an output window of the whole input (``origin``),
  which tiled restoration needs (``frfsr_plugin/restoration/tiling.py``).

On CPU the ``torchvision`` and ``pytorch`` backends (and output windows on any device) differentiate through
:class:`~frfsr_plugin.ops.deform_conv_function.ModulatedDeformConvFunction`, whose backward gives torchvision's
gradients about 10x faster than torchvision's CPU backward (``docs/design.md``).
"""
import functools

import torch
import torchvision

from frfsr_plugin.ops.deform_conv_function import (ModulatedDeformConvFunction, normalized_grid, sample_bilinear,
                                                   sampling_positions)
from frfsr_plugin.ops.precision import float32_op

DCN_BACKENDS = ('torchvision', 'mmcv', 'pytorch')


def _mmcv_modulated_deform_conv2d():
    try:
        from mmcv.ops import modulated_deform_conv2d
    except ImportError as error:
        raise ImportError('dcn_backend: mmcv needs mmcv built with its ops (`mmcv.ops` failed to import: '
                          f'{error}). Use dcn_backend: torchvision, which gives identical results.') from error
    return modulated_deform_conv2d


def check_dcn_backend(backend):
    """Validate a backend name and, for mmcv, that its compiled ops import.

    Args:
        backend (str): One of ``DCN_BACKENDS``.
    """
    if backend not in DCN_BACKENDS:
        raise ValueError(f'dcn_backend must be one of {DCN_BACKENDS}, got {backend!r}.')
    if backend == 'mmcv':
        _mmcv_modulated_deform_conv2d()


def grid_sample_modulated_deform_conv2d(x, offset, mask, weight, bias, origin=(0, 0)):
    """Modulated 3x3 deformable convolution (stride 1, padding 1, dilation 1) with ``grid_sample``.

    The output grid may be smaller than the input and lie anywhere on it: tap k = (k_y, k_x) of output pixel
    p = (i, j) samples ``x`` at ``origin + p + k - 1 + offset[p, k]`` (bilinear, zero outside ``x``). With
    ``origin = (0, 0)`` and an output of the input's size this is the ordinary deformable conv; otherwise it is the
    ordinary conv's output window at ``origin`` computed from the whole input (tiled restoration).

    Args:
        x (Tensor): Input, shape (B, C_in, H, W); C_in divisible by the number of offset groups G.
        offset (Tensor): Shape (B, 18 G, h, w), (dy, dx) per tap, group major.
        mask (Tensor): Shape (B, 9 G, h, w).
        weight (Tensor): Shape (C_out, C_in, 3, 3).
        bias (Tensor | None): Shape (C_out,).
        origin (tuple[int, int]): Position (y, x) in ``x`` of output pixel (0, 0). Default: (0, 0).

    Returns:
        Tensor: Shape (B, C_out, h, w).
    """
    batch, channels = x.shape[:2]
    height, width = offset.shape[-2:]
    groups = offset.shape[1] // 18
    sampled = sample_bilinear(x, normalized_grid(*sampling_positions(offset, origin), x.shape[-2:]), groups)
    modulation = mask.view(batch, groups, 1, 9, height, width)
    sampled = sampled * modulation if torch.is_grad_enabled() else sampled.mul_(modulation)  # in place: 1 copy less
    out = torch.matmul(weight.reshape(weight.shape[0], channels * 9), sampled.view(batch, channels * 9, -1))
    out = out.view(batch, -1, height, width)
    return out if bias is None else out + bias.view(1, -1, 1, 1)


@float32_op
def modulated_deform_conv2d(x, offset, mask, weight, bias, padding=1, backend='torchvision', origin=(0, 0)):
    """Modulated deformable convolution with stride 1 and dilation 1 (float32 under autocast).

    An output window of the whole input (``origin`` other than (0, 0), or an offset map smaller than ``x``, as in
    tiled restoration) is computed by the ``grid_sample`` formulation whatever the backend, because torchvision's
    and mmcv's ops tie the output size to the input size.

    Args:
        x (Tensor): Input, shape (B, C_in, H, W).
        offset (Tensor): Sampling offsets, shape (B, 2 * G * k * k, h, w), (dy, dx) per tap; (h, w) = (H, W) unless
            an output window is computed.
        mask (Tensor): Modulation in [0, 1], shape (B, G * k * k, h, w).
        weight (Tensor): Kernel, shape (C_out, C_in, k, k).
        bias (Tensor | None): Bias, shape (C_out,).
        padding (int): Zero padding. Default: 1.
        backend (str): One of ``DCN_BACKENDS``. Default: ``'torchvision'``.
        origin (tuple[int, int]): Position (y, x) in ``x`` of output pixel (0, 0). Default: (0, 0).

    Returns:
        Tensor: Output, shape (B, C_out, h, w).
    """
    window = tuple(origin) != (0, 0) or offset.shape[-2:] != x.shape[-2:]
    grid_sample_form = backend == 'pytorch' or window
    three_by_three = weight.shape[-2:] == (3, 3) and padding == 1  # what the grid_sample formulas cover
    if grid_sample_form and not three_by_three:
        raise ValueError('the grid_sample deformable conv (dcn_backend pytorch, output windows) supports 3x3 '
                         'kernels with padding 1 only.')
    if backend == 'mmcv' and not window:
        deform_groups = offset.shape[1] // (2 * weight.shape[2] * weight.shape[3])
        return _mmcv_modulated_deform_conv2d()(x, offset, mask, weight, bias, 1, padding, 1, 1, deform_groups)
    if grid_sample_form:
        forward_fn = functools.partial(grid_sample_modulated_deform_conv2d, origin=origin)
    else:
        forward_fn = functools.partial(torchvision_modulated_deform_conv2d, padding=padding)
        if x.device.type != 'cpu' or not three_by_three:
            return forward_fn(x, offset, mask, weight, bias)  # torchvision's own backward (fast on CUDA)
    tensors = (x, offset, mask, weight, bias)
    if not (torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)):
        return forward_fn(*tensors)
    return ModulatedDeformConvFunction.apply(forward_fn, *tensors, origin)


def torchvision_modulated_deform_conv2d(x, offset, mask, weight, bias, padding=1):
    """``torchvision.ops.deform_conv2d`` with stride 1 and dilation 1; arguments as :func:`modulated_deform_conv2d`."""
    return torchvision.ops.deform_conv2d(x, offset, weight, bias, stride=1, padding=padding, dilation=1, mask=mask)


class PreOffsetModulatedDeformConv(torch.nn.Module):
    """3x3 modulated deformable conv whose learned offsets are added to correspondence pre-offsets.

    The offset/mask branch ``conv_offset_mask`` maps an offset feature to ``G * 27`` channels: the first ``G * 18`` are
    learned offsets, the last ``G * 9`` mask logits. It is zero-initialised, so at start the conv samples exactly at
    the pre-offset positions with mask 0.5. Parameter names (``weight``, ``bias``, ``conv_offset_mask``) follow DCNv2.

    Args:
        in_channels (int): Channels of the sampled feature and of the offset feature.
        out_channels (int): Output channels.
        deformable_groups (int): Offset groups G. Default: 8.
        backend (str): One of ``DCN_BACKENDS``. Default: ``'torchvision'``.
    """

    kernel_taps = 9

    def __init__(self, in_channels, out_channels, deformable_groups=8, backend='torchvision'):
        super().__init__()
        check_dcn_backend(backend)
        self.deformable_groups = deformable_groups
        self.backend = backend
        self.weight = torch.nn.Parameter(torch.empty(out_channels, in_channels, 3, 3))
        self.bias = torch.nn.Parameter(torch.zeros(out_channels))
        self.conv_offset_mask = torch.nn.Conv2d(in_channels, deformable_groups * 3 * self.kernel_taps, 3, 1, 1)
        self.reset_parameters()

    def reset_parameters(self):
        """U(-1/sqrt(9 C_in), 1/sqrt(9 C_in)) kernel, zero bias, zero offset/mask branch (as DCNv2)."""
        bound = 1.0 / (self.weight.shape[1] * self.kernel_taps)**0.5
        torch.nn.init.uniform_(self.weight, -bound, bound)
        torch.nn.init.zeros_(self.bias)
        self.zero_offset_branch()

    def zero_offset_branch(self):
        torch.nn.init.zeros_(self.conv_offset_mask.weight)
        torch.nn.init.zeros_(self.conv_offset_mask.bias)

    def forward(self, x, offset_feat, pre_offset, origin=(0, 0)):
        """
        Args:
            x (Tensor): Feature to sample (the raw Ref feature), shape (B, C_in, H, W).
            offset_feat (Tensor): Feature predicting offsets and mask, shape (B, C_in, h, w); (h, w) = (H, W) except
                for an output window (tiled restoration).
            pre_offset (Tensor): Correspondence offsets shared by all groups, shape (B, 18, h, w), (dy, dx) per tap.
            origin (tuple[int, int]): Position (y, x) in ``x`` of output pixel (0, 0). Default: (0, 0).

        Returns:
            Tensor: Shape (B, C_out, h, w).
        """
        offset_mask = self.conv_offset_mask(offset_feat)
        num_offsets = 2 * self.deformable_groups * self.kernel_taps
        offset = offset_mask[:, :num_offsets] + pre_offset.repeat(1, self.deformable_groups, 1, 1)
        mask = torch.sigmoid(offset_mask[:, num_offsets:])
        return modulated_deform_conv2d(x, offset, mask, self.weight, self.bias, backend=self.backend, origin=origin)
