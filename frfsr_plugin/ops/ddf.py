"""Decoupled dynamic filter (DDF) in plain PyTorch.

Paper: Decoupled Dynamic Filter Networks (Zhou et al., CVPR 2021). FRFSR uses the multiplicative combination with a
3x3 kernel, stride 1, dilation 1 and one head: the per-pixel spatial filter (shared by all channels) and the
per-channel filter (shared by all pixels) are multiplied tap by tap:

    ``y[b, c, p] = sum_t x[b, c, p + d_t] * channel_filter[b, c, t] * spatial_filter[b, t, p]``

with ``d_t`` the 3x3 neighbourhood in row-major order (t = 3 * row + col) and zero padding.

* :func:`ddf_mul` (used by the networks) is a custom autograd function that saves only its three inputs and
  recomputes the 9 shifted products in backward, tap by tap, so neither pass materialises a (B, C, 9, H, W) tensor
  and training keeps one input-sized tensor per DDF layer instead of the unfold formulation's 9.
* :func:`ddf_mul_unfold` is the direct formulation (unfold, multiply, sum), kept as the reference for tests and
  ``tools/benchmark.py``.
"""
import torch
import torch.nn.functional as F

from frfsr_plugin.ops.precision import float32_op

KERNEL_SIZE = 3
TAPS = tuple(divmod(tap, KERNEL_SIZE) for tap in range(KERNEL_SIZE * KERNEL_SIZE))  # (row, col) of each tap


def ddf_mul_unfold(x, channel_filter, spatial_filter):
    """Direct formulation ``(unfold(x) * channel_filter * spatial_filter).sum(taps)``; arguments as :func:`ddf_mul`.

    It keeps (B, C, 9, H, W) tensors for backward, about 9 input-sized tensors per call.
    """
    batch, channels, height, width = x.shape
    patches = F.unfold(x, KERNEL_SIZE, padding=1).view(batch, channels, KERNEL_SIZE**2, height, width)
    return (patches * channel_filter[..., None, None] * spatial_filter[:, None]).sum(2)


class DDFMulFunction(torch.autograd.Function):
    """Memory-lean DDF: forward and backward accumulate over the 9 taps on slices of the zero-padded input."""

    @staticmethod
    def forward(ctx, x, channel_filter, spatial_filter):
        height, width = x.shape[-2:]
        padded = F.pad(x, (1, 1, 1, 1))
        out = torch.zeros_like(x)
        for tap, (row, col) in enumerate(TAPS):
            out.addcmul_(padded[:, :, row:row + height, col:col + width] * channel_filter[:, :, tap, None, None],
                         spatial_filter[:, tap:tap + 1])
        ctx.save_for_backward(x, channel_filter, spatial_filter)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, channel_filter, spatial_filter = ctx.saved_tensors
        height, width = x.shape[-2:]
        padded = F.pad(x, (1, 1, 1, 1))
        grad_padded = torch.zeros_like(padded) if ctx.needs_input_grad[0] else None
        grad_channel = torch.empty_like(channel_filter) if ctx.needs_input_grad[1] else None
        grad_spatial = torch.empty_like(spatial_filter) if ctx.needs_input_grad[2] else None
        for tap, (row, col) in enumerate(TAPS):
            shifted = padded[:, :, row:row + height, col:col + width]
            spatial = spatial_filter[:, tap:tap + 1]
            if grad_padded is not None:
                grad_padded[:, :, row:row + height,
                            col:col + width].addcmul_(grad_out * channel_filter[:, :, tap, None, None], spatial)
            if grad_channel is not None:
                grad_channel[:, :, tap] = (grad_out * shifted * spatial).sum((2, 3))
            if grad_spatial is not None:
                grad_spatial[:, tap] = (grad_out * shifted * channel_filter[:, :, tap, None, None]).sum(1)
        grad_x = grad_padded[:, :, 1:-1, 1:-1] if grad_padded is not None else None
        return grad_x, grad_channel, grad_spatial


@float32_op
def ddf_mul(x, channel_filter, spatial_filter):
    """Apply a 3x3 decoupled dynamic filter with zero padding (memory-lean autograd; float32 under autocast).

    Args:
        x (Tensor): Input, shape (B, C, H, W).
        channel_filter (Tensor): Per-channel kernels, shape (B, C, 9).
        spatial_filter (Tensor): Per-pixel kernels, shape (B, 9, H, W).

    Returns:
        Tensor: Shape (B, C, H, W).
    """
    return DDFMulFunction.apply(x, channel_filter, spatial_filter)
