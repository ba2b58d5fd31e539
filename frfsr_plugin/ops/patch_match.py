"""Dense 3x3 patch matching by cosine similarity (the correspondence search of C2-Matching / FRFSR).

Both formulations take per-pixel L2-normalised features, treat every 3x3 patch as a ``9 C`` vector, divide ref
patches by their norm (+1e-5) and return, for every input patch, the arg-max ref patch and its cosine similarity.

* :func:`match_patches_direct` is the original formulation: unfold both maps into ``9 C``-dimensional patch vectors
  and multiply, ``9 C N_in N_ref`` multiply-adds.
* :func:`match_patches` computes the per-pixel inner products ``M = A^T B`` once (``C N_in N_ref`` multiply-adds)
  and gets every patch correlation as the sum of ``M`` over the 9 aligned shifts (two passes of 3), about 9x
  fewer multiply-adds. ``M`` is formed a few input rows at a time and reduced to each row's best match at once, so
  the memory-bound shift sums stay in cache and ``M`` is never held whole. After normalisation every ref pixel
  feature is a unit vector, so every ref patch norm is the constant 3 and needs no per-patch division; only when
  some ref feature vector is (numerically) zero, and so stays 0 rather than becoming a unit vector, do the patch
  norms come from a 3x3 box sum of the per-pixel squared norms, which handles that case exactly.

Both process the ref side in chunks so that their buffers stay under ``max_corr_elements``.
"""
import math

import torch
import torch.nn.functional as F

from frfsr_plugin.ops.precision import float32_op
from frfsr_plugin.utils.errors import InputSizeError

PATCH_SIZE = 3
DEFAULT_MAX_CORR_ELEMENTS = 2**29  # 2 GiB of fp32 correlation per chunk, as the original code
CACHE_BLOCK_ELEMENTS = 2**23  # products of one block of input rows: about 32 MiB
NORMALIZE_EPS = 1e-12  # F.normalize's default: smaller feature vectors do not become unit vectors


def check_feature_sizes(feat_in, feat_ref):
    if min(feat_in.shape[-2:]) < PATCH_SIZE or min(feat_ref.shape[-2:]) < PATCH_SIZE:
        raise InputSizeError(f'Feature maps must be at least {PATCH_SIZE}x{PATCH_SIZE} to match patches, got '
                             f'{tuple(feat_in.shape[-2:])} and {tuple(feat_ref.shape[-2:])}.')


def merge_best(best, candidate):
    """Running (max value, index) over chunks; strict ``>`` so that the earlier chunk wins ties."""
    if best is None:
        return candidate
    better = candidate[0] > best[0]
    return torch.where(better, candidate[0], best[0]), torch.where(better, candidate[1], best[1])


@float32_op
def match_patches_direct(feat_in, feat_ref, max_corr_elements=DEFAULT_MAX_CORR_ELEMENTS):
    """Find, for every 3x3 input patch, the most similar 3x3 ref patch (patch-vector formulation).

    Args:
        feat_in (Tensor): Input (LR-side) features, shape (B, C, H, W).
        feat_ref (Tensor): Ref features, shape (B, C, H_r, W_r).
        max_corr_elements (int): Upper bound on the elements of one correlation chunk (whole batch).

    Returns:
        tuple[Tensor, Tensor]:
            max_idx: Row-major index of the best ref patch on the (H_r - 2) x (W_r - 2) patch grid,
            shape (B, H - 2, W - 2), int64.
            max_val: Cosine similarity of the best pair, shape (B, H - 2, W - 2).
    """
    check_feature_sizes(feat_in, feat_ref)
    batch, _, height, width = feat_in.shape
    patches_in = F.unfold(F.normalize(feat_in, dim=1), PATCH_SIZE)  # (B, 9C, N_in)
    patches_ref = F.unfold(F.normalize(feat_ref, dim=1), PATCH_SIZE)  # (B, 9C, N_ref)
    patches_ref = patches_ref / (patches_ref.norm(dim=1, keepdim=True) + 1e-5)
    num_in, num_ref = patches_in.shape[-1], patches_ref.shape[-1]

    chunk = max(1, max_corr_elements // (batch * num_in))
    best = None
    for start in range(0, num_ref, chunk):
        corr = torch.bmm(patches_ref[:, :, start:start + chunk].transpose(1, 2), patches_in)  # (B, n, N_in)
        val, idx = corr.max(dim=1)
        best = merge_best(best, (val, idx + start))
    best_val, best_idx = best
    best_val = best_val / (patches_in.norm(dim=1) + 1e-5)
    grid = (batch, height - PATCH_SIZE + 1, width - PATCH_SIZE + 1)
    return best_idx.view(grid), best_val.view(grid)


def patch_norms(feat):
    """L2 norm of every 3x3 patch of a feature map: sqrt of the 3x3 box sum of per-pixel squared norms.

    Args:
        feat (Tensor): Shape (B, C, H, W).

    Returns:
        Tensor: Shape (B, H - 2, W - 2).
    """
    return F.avg_pool2d(feat.square().sum(1, keepdim=True), PATCH_SIZE, stride=1).mul(PATCH_SIZE**2).sqrt()[:, 0]


def matching_plan(batch, in_size, ref_size, max_corr_elements):
    """Ref rows per chunk and input rows per product block of :func:`match_patches`, and its buffer elements.

    For one chunk of ``n`` Ref patch rows (``n + 2`` feature rows), the per-pixel products of one input row take
    ``B W (n + 2) W_r`` elements. Alive at once: the products of a block of ``k`` input rows, three rows of their sums
    along x and one correlation row, at most ``(k + 4)`` such rows. ``n`` is the largest that fits the budget with
    ``k = 1``; ``k`` then fills what is left, up to about 32 MiB, so that the shift sums of a block run in cache.

    Args:
        batch (int): B.
        in_size (tuple[int, int]): (H, W) of the input feature map.
        ref_size (tuple[int, int]): (H_r, W_r) of the Ref feature map.
        max_corr_elements (int): Budget in elements.

    Returns:
        tuple[int, int, int]: Ref patch rows per chunk (at least 1), input rows per block (at least 1), and the
        elements of the buffers alive at once.
    """
    (in_height, in_width), (ref_h, ref_w) = in_size, ref_size
    per_ref_row = batch * in_width * ref_w
    ref_rows = min(ref_h - 2, max(1, max_corr_elements // (5 * per_ref_row) - (PATCH_SIZE - 1)))
    row_elements = per_ref_row * (ref_rows + PATCH_SIZE - 1)
    block_rows = max(1, min(max_corr_elements // row_elements - 4, CACHE_BLOCK_ELEMENTS // row_elements, in_height))
    return ref_rows, block_rows, (block_rows + 4) * row_elements


@float32_op
def match_patches(feat_in, feat_ref, max_corr_elements=DEFAULT_MAX_CORR_ELEMENTS):
    """Find, for every 3x3 input patch, the most similar 3x3 ref patch (shifted per-pixel formulation).

    Gives the same matches as :func:`match_patches_direct` up to float rounding (ties aside) with about 9x fewer
    multiply-adds. Ref rows are processed in chunks and input rows in blocks (:func:`matching_plan`): the products of
    a block are summed along x row by row and along y over the last three rows, and each input row's best match is
    kept, so the buffers alive at once stay under ``max_corr_elements`` elements and the shift sums run in cache.

    Args:
        feat_in (Tensor): Input (LR-side) features, shape (B, C, H, W).
        feat_ref (Tensor): Ref features, shape (B, C, H_r, W_r).
        max_corr_elements (int): Memory budget of one chunk, in elements (whole batch).

    Returns:
        tuple[Tensor, Tensor]: ``max_idx`` (B, H - 2, W - 2) int64, row-major on the (H_r - 2) x (W_r - 2) ref patch
        grid, and ``max_val`` (B, H - 2, W - 2), the cosine similarity of the best pair.
    """
    check_feature_sizes(feat_in, feat_ref)
    batch, channels, height, width = feat_in.shape
    ref_h, ref_w = feat_ref.shape[-2:]
    grid_h, grid_w, ref_grid_h, ref_grid_w = height - 2, width - 2, ref_h - 2, ref_w - 2
    unit_ref = bool((feat_ref.norm(dim=1) >= NORMALIZE_EPS).all())  # every normalised ref pixel has norm 1
    feat_in, feat_ref = F.normalize(feat_in, dim=1, eps=NORMALIZE_EPS), F.normalize(feat_ref, dim=1, eps=NORMALIZE_EPS)
    in_flat = feat_in.flatten(2).transpose(1, 2)  # (B, H W, C)
    ref_scale = None if unit_ref else 1.0 / (patch_norms(feat_ref) + 1e-5)  # (B, H_r - 2, W_r - 2)

    ref_rows, block_rows = matching_plan(batch, (height, width), (ref_h, ref_w), max_corr_elements)[:2]
    best_val = feat_in.new_full((batch, grid_h, grid_w), -float('inf'))
    best_idx = torch.zeros(batch, grid_h, grid_w, dtype=torch.long, device=feat_in.device)
    for top in range(0, ref_grid_h, ref_rows):
        bottom = min(top + ref_rows, ref_grid_h)
        n = bottom - top
        ref_chunk = feat_ref[:, :, top:bottom + PATCH_SIZE - 1].flatten(2)  # (B, C, (n + 2) W_r)
        products = in_flat.new_empty(batch * block_rows * width * (n + PATCH_SIZE - 1) * ref_w)  # reused per block
        sums_along_x = [in_flat.new_empty(batch, grid_w, n + PATCH_SIZE - 1, ref_grid_w) for _ in range(PATCH_SIZE)]
        corr = in_flat.new_empty(batch, grid_w, n, ref_grid_w)
        for block_top in range(0, height, block_rows):
            block = in_flat[:, block_top * width:(block_top + block_rows) * width]
            block_shape = (batch, block.shape[1], ref_chunk.shape[2])  # the last block may have fewer rows
            block_products = torch.bmm(block, ref_chunk, out=products[:math.prod(block_shape)].view(block_shape))
            block_products = block_products.view(batch, -1, width, n + PATCH_SIZE - 1, ref_w)
            for row in range(block_products.shape[1]):
                # sum the 9 aligned shifts in two passes of 3: along x (input and ref together), then along y
                row_products = block_products[:, row]  # (B, W, n + 2, W_r)
                input_row = block_top + row
                along_x = sums_along_x[input_row % PATCH_SIZE]  # a ring of the last three input rows
                torch.add(
                    row_products[:, 0:grid_w, :, 0:ref_grid_w],
                    row_products[:, 1:grid_w + 1, :, 1:ref_grid_w + 1],
                    out=along_x).add_(row_products[:, 2:, :, 2:])
                if input_row < PATCH_SIZE - 1:
                    continue
                above, middle, below = (sums_along_x[(input_row + shift) % PATCH_SIZE] for shift in (1, 2, 0))
                torch.add(above[:, :, 0:n], middle[:, :, 1:n + 1], out=corr).add_(below[:, :, 2:n + 2])
                if ref_scale is not None:
                    corr.mul_(ref_scale[:, None, top:bottom])
                val, idx = corr.view(batch, grid_w, -1).max(dim=2)
                grid_row = input_row - (PATCH_SIZE - 1)
                best_val[:, grid_row], best_idx[:, grid_row] = merge_best(
                    (best_val[:, grid_row], best_idx[:, grid_row]), (val, idx + top * ref_grid_w))
    if ref_scale is None:
        best_val = best_val / (PATCH_SIZE + 1e-5)
    return best_idx, best_val / (patch_norms(feat_in) + 1e-5)
