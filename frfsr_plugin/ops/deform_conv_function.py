"""Modulated deformable convolution as an autograd function with a fast, memory-lean backward.

The forward runs a given implementation (torchvision's op or the ``grid_sample`` formulation) and saves only its
inputs. The backward recomputes the bilinear samples with ``grid_sample`` and forms every gradient with matrix
products and ``grid_sample`` calls:

* weight: ``sum_b grad_out_b @ columns_b^T`` with ``columns = samples * mask``, shape (C_in 9, h w) per image;
* bias: ``grad_out`` summed over batch and pixels;
* mask: ``sum_{c in group} (W^T grad_out)[c, k, p] * samples[c, k, p]``;
* input: ``grid_sample``'s input gradient of ``(W^T grad_out) * mask`` (the scatter of every sample to its four
  bilinear corners);
* offsets: the derivative of bilinear interpolation taken on the floor cell of the sampling point, as torchvision's
  ``get_coordinate_weight``: ``d/dy = S(floor(y) + 1, x) - S(floor(y), x)`` with ``S`` the sample linearly
  interpolated along x on an integer row (zero outside the input), and likewise along x. So the derivative at
  integer sampling points (where the pre-offsets of an untrained network put every tap) is torchvision's one-sided
  one, not ``grid_sample``'s, which depends on float rounding of the normalised grid there.

On CPU this backward is about 10x faster than torchvision's (see ``docs/design.md``) and keeps no (B, 9 C, H, W)
tensor between forward and backward.
"""
import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

TAPS = 9  # 3x3 kernel


def sampling_positions(offset, origin=(0, 0)):
    """Pixel coordinates sampled by each tap of a 3x3 deformable conv (stride 1, padding 1, dilation 1).

    Args:
        offset (Tensor): Shape (B, 18 G, h, w), (dy, dx) per tap, group major.
        origin (tuple[int, int]): Position (y, x) in the input of output pixel (0, 0).

    Returns:
        tuple[Tensor, Tensor]: ``pos_y`` and ``pos_x``, each of shape (B, G, 9, h, w): tap k = (k_y, k_x) of output
        pixel (i, j) samples ``origin + (i, j) + (k_y, k_x) - 1 + offset``.
    """
    batch, _, height, width = offset.shape
    offset = offset.view(batch, -1, TAPS, 2, height, width)
    kwargs = {'dtype': offset.dtype, 'device': offset.device}
    rows = torch.arange(origin[0], origin[0] + height, **kwargs).view(height, 1)
    cols = torch.arange(origin[1], origin[1] + width, **kwargs).view(1, width)
    taps = torch.arange(3, **kwargs) - 1
    tap_y, tap_x = taps.repeat_interleave(3).view(TAPS, 1, 1), taps.repeat(3).view(TAPS, 1, 1)
    return offset[:, :, :, 0] + (rows + tap_y), offset[:, :, :, 1] + (cols + tap_x)


def normalized_grid(pos_y, pos_x, in_size):
    """``grid_sample`` grid (align_corners=True) of pixel positions (B, G, 9, h, w): shape (B G, 9 h, w, 2)."""
    batch, groups, taps, height, width = pos_y.shape
    grid_x = pos_x * (2.0 / max(in_size[1] - 1, 1)) - 1.0
    grid_y = pos_y * (2.0 / max(in_size[0] - 1, 1)) - 1.0
    return torch.stack((grid_x, grid_y), dim=-1).view(batch * groups, taps * height, width, 2)


def sample_bilinear(x, grid, groups):
    """Bilinear samples of ``x`` (B, C, H, W), zero outside, at a grid of :func:`normalized_grid`.

    Returns:
        Tensor: Shape (B, G, C / G, 9, h, w).
    """
    batch, channels, in_height, in_width = x.shape
    height, width = grid.shape[1] // TAPS, grid.shape[2]
    sampled = F.grid_sample(
        x.reshape(batch * groups, channels // groups, in_height, in_width),
        grid,
        mode='bilinear',
        padding_mode='zeros',
        align_corners=True)
    return sampled.view(batch, groups, channels // groups, TAPS, height, width)


def bilinear_slope(x, pos_y, pos_x, groups, axis):
    """Derivative of the bilinear samples along y (axis 0) or x (axis 1) on the floor cell of each position.

    Along y: ``S(floor(y) + 1, x) - S(floor(y), x)``, the difference of the samples on the two integer rows around
    the position (torchvision's convention, also at integer positions).

    Args:
        x (Tensor): Input, shape (B, C, H, W).
        pos_y (Tensor): Pixel rows, shape (B, G, 9, h, w).
        pos_x (Tensor): Pixel columns, shape (B, G, 9, h, w).
        groups (int): Offset groups G.
        axis (int): 0 for d/dy, 1 for d/dx.

    Returns:
        Tensor: Shape (B, G, C / G, 9, h, w).
    """
    in_size = x.shape[-2:]
    if axis == 0:
        floor_y = pos_y.floor()
        low, high = (floor_y, pos_x), (floor_y + 1, pos_x)
    else:
        floor_x = pos_x.floor()
        low, high = (pos_y, floor_x), (pos_y, floor_x + 1)
    return sample_bilinear(x, normalized_grid(*high, in_size),
                           groups).sub_(sample_bilinear(x, normalized_grid(*low, in_size), groups))


class ModulatedDeformConvFunction(torch.autograd.Function):
    """``forward_fn(x, offset, mask, weight, bias)`` with the backward described in the module docstring."""

    @staticmethod
    def forward(ctx, forward_fn, x, offset, mask, weight, bias, origin):
        ctx.origin = tuple(origin)
        ctx.has_bias = bias is not None
        ctx.save_for_backward(x, offset, mask, weight)
        return forward_fn(x, offset, mask, weight, bias)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        x, offset, mask, weight = ctx.saved_tensors
        need_x, need_offset, need_mask, need_weight, need_bias = ctx.needs_input_grad[1:6]
        batch, channels, in_height, in_width = x.shape
        height, width = grad_out.shape[-2:]
        groups = offset.shape[1] // (2 * TAPS)
        grad_out = grad_out.contiguous().view(batch, -1, height * width)

        pos_y, pos_x = sampling_positions(offset, ctx.origin)
        grid = normalized_grid(pos_y, pos_x, (in_height, in_width))
        modulation = mask.view(batch, groups, 1, TAPS, height, width)
        grad_samples = torch.matmul(weight.reshape(weight.shape[0], -1).t(), grad_out)  # (B, 9 C_in, h w)
        grad_samples = grad_samples.view(batch, groups, channels // groups, TAPS, height, width)
        grad_weight = grad_mask = grad_x = grad_offset = None
        if need_weight or need_mask:
            samples = sample_bilinear(x, grid, groups)
            if need_mask:
                grad_mask = (grad_samples * samples).sum(2).view_as(mask)
            if need_weight:
                columns = samples.mul_(modulation).view(batch, channels * TAPS, height * width)
                grad_weight = torch.bmm(grad_out, columns.transpose(1, 2)).sum(0).view_as(weight)
            del samples
        grad_samples.mul_(modulation)
        if need_x:
            grad_x = torch.ops.aten.grid_sampler_2d_backward(
                grad_samples.view(batch * groups, channels // groups, TAPS * height, width),
                x.reshape(batch * groups, channels // groups, in_height, in_width), grid, 0, 0, True,
                [True, False])[0].view_as(x)
        if need_offset:
            grad_offset = torch.stack(
                [bilinear_slope(x, pos_y, pos_x, groups, axis).mul_(grad_samples).sum(2) for axis in (0, 1)],
                dim=3).view_as(offset)
        grad_bias = grad_out.sum((0, 2)) if ctx.has_bias and need_bias else None
        return None, grad_x, grad_offset, grad_mask, grad_weight, grad_bias, None
