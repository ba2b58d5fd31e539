"""Turning patch matches into flows, pre-offsets for deformable convs, and flow warping."""
import torch
import torch.nn.functional as F

from frfsr_plugin.ops.patch_match import PATCH_SIZE


def index_to_flow(max_idx, ref_grid_width):
    """Convert best-match indices into a flow on the feature grid.

    The flow at a patch's top-left corner (x, y) is ``(x_ref - x, y_ref - y)`` where (x_ref, y_ref) is the top-left
    corner of the matched ref patch. The result is zero-padded on the bottom and right by ``PATCH_SIZE - 1`` so that it
    covers the whole feature map.

    Args:
        max_idx (Tensor): Row-major ref patch indices, shape (B, h', w').
        ref_grid_width (int): Width of the ref patch grid used to build the indices.

    Returns:
        Tensor: Flow, shape (B, h' + 2, w' + 2, 2), last dim ordered (x, y).
    """
    _, grid_h, grid_w = max_idx.shape
    ys, xs = torch.meshgrid(
        torch.arange(grid_h, device=max_idx.device), torch.arange(grid_w, device=max_idx.device), indexing='ij')
    flow_x = (max_idx % ref_grid_width) - xs
    flow_y = torch.div(max_idx, ref_grid_width, rounding_mode='floor') - ys
    flow = torch.stack((flow_x, flow_y), dim=-1).float()
    pad = PATCH_SIZE - 1
    return F.pad(flow, (0, 0, 0, pad, 0, pad))


def upscale_flow(flow, scale):
    """Nearest-neighbour upscale a flow and multiply its values by ``scale``.

    Args:
        flow (Tensor): Shape (B, H, W, 2).
        scale (int): Integer factor.

    Returns:
        Tensor: Shape (B, scale * H, scale * W, 2).
    """
    if scale == 1:
        return flow
    return flow.repeat_interleave(scale, dim=1).repeat_interleave(scale, dim=2) * scale


def flow_to_pre_offsets(flow, scale):
    """Build the 3x3 deformable-conv pre-offsets from a flow.

    Kernel tap k = 3 i + j takes the flow shifted down by ``scale * i`` rows and right by ``scale * j`` columns (zero
    fill), i.e. the match of the neighbouring patch in which the pixel sits at relative position (i, j).

    Args:
        flow (Tensor): Flow at this scale, shape (B, H, W, 2), last dim (x, y).
        scale (int): Ratio between this scale and the matching grid (1, 2 or 4).

    Returns:
        Tensor: Offsets in deformable-conv layout, shape (B, 18, H, W), channel 2k = dy and 2k + 1 = dx of tap k.
    """
    height, width = flow.shape[1:3]
    reach = scale * (PATCH_SIZE - 1)
    flow_yx = flow.flip(-1).permute(0, 3, 1, 2)  # (B, 2, H, W) as (y, x)
    padded = F.pad(flow_yx, (reach, 0, reach, 0))
    taps = []
    for row in range(PATCH_SIZE):
        for col in range(PATCH_SIZE):
            top, left = reach - scale * row, reach - scale * col
            taps.append(padded[:, :, top:top + height, left:left + width])
    return torch.cat(taps, dim=1)


def flow_warp(x, flow):
    """Bilinearly sample ``x`` at ``p + flow(p)`` for every position p of the flow's grid, zero outside ``x``
    (align_corners=True).

    Args:
        x (Tensor): Shape (B, C, H, W).
        flow (Tensor): Shape (B, h, w, 2), last dim (x, y), in pixels of ``x``; (h, w) may differ from (H, W) (a
            flow from the LR grid into a reference of its own size).

    Returns:
        Tensor: Shape (B, C, h, w).
    """
    height, width = x.shape[-2:]
    ys, xs = torch.meshgrid(
        torch.arange(flow.shape[1], dtype=x.dtype, device=x.device),
        torch.arange(flow.shape[2], dtype=x.dtype, device=x.device),
        indexing='ij')
    grid_x = 2.0 * (xs + flow[..., 0]) / max(width - 1, 1) - 1.0
    grid_y = 2.0 * (ys + flow[..., 1]) / max(height - 1, 1) - 1.0
    return F.grid_sample(
        x, torch.stack((grid_x, grid_y), dim=-1), mode='bilinear', padding_mode='zeros', align_corners=True)
