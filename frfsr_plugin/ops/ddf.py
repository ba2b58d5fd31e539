"""Decoupled dynamic filter (DDF) in plain PyTorch.

Paper: Decoupled Dynamic Filter Networks (Zhou et al., CVPR 2021). FRFSR uses the multiplicative combination with a
3x3 kernel, stride 1, dilation 1 and one head: the per-pixel spatial filter (shared by all channels) and the
per-channel filter (shared by all pixels) are multiplied tap by tap.
"""
import torch.nn.functional as F

KERNEL_SIZE = 3


def ddf_mul(x, channel_filter, spatial_filter):
    """Apply a 3x3 decoupled dynamic filter with zero padding.

    ``y[b, c, p] = sum_t x[b, c, p + d_t] * channel_filter[b, c, t] * spatial_filter[b, t, p]`` where ``d_t`` runs over
    the 3x3 neighbourhood in row-major order (t = 3 * row + col).

    The sum is accumulated tap by tap over slices of the padded input, so no (B, C, 9, H, W) tensor is materialised.

    Args:
        x (Tensor): Input, shape (B, C, H, W).
        channel_filter (Tensor): Per-channel kernels, shape (B, C, 9).
        spatial_filter (Tensor): Per-pixel kernels, shape (B, 9, H, W).

    Returns:
        Tensor: Shape (B, C, H, W).
    """
    height, width = x.shape[-2:]
    padded = F.pad(x, (1, 1, 1, 1))
    out = None
    for tap in range(KERNEL_SIZE * KERNEL_SIZE):
        row, col = divmod(tap, KERNEL_SIZE)
        shifted = padded[:, :, row:row + height, col:col + width]
        term = shifted * channel_filter[:, :, tap, None, None] * spatial_filter[:, tap:tap + 1]
        out = term if out is None else out + term
    return out
