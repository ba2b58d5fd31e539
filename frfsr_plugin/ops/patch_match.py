"""Dense 3x3 patch matching by cosine similarity (the correspondence search of C2-Matching / FRFSR).

Both formulations take per-pixel L2-normalised features, treat every 3x3 patch as a ``9 C`` vector, divide ref
patches by their norm (+1e-5) and return, for every input patch, the arg-max ref patch and its cosine similarity.

* :func:`match_patches_direct` is the original formulation: unfold both maps into ``9 C``-dimensional patch vectors
  and multiply, ``9 C N_in N_ref`` multiply-adds.
* :func:`match_patches` computes the per-pixel inner products ``M = A^T B`` once (``C N_in N_ref`` multiply-adds)
  and gets every patch correlation as the sum of ``M`` over the 9 aligned shifts (two passes of 3), about 9x
  fewer multiply-adds. After normalisation every ref pixel feature is a unit vector, so every ref patch norm is the
  constant 3 and needs no per-patch division; only when some ref feature vector is (numerically) zero, and so stays
  0 rather than becoming a unit vector, do the patch norms come from a 3x3 box sum of the per-pixel squared norms,
  which handles that case exactly.

Both process the ref side in chunks so that one chunk's correlation buffer stays under ``max_corr_elements``.
"""
import torch
import torch.nn.functional as F

from frfsr_plugin.ops.precision import float32_op
from frfsr_plugin.utils.errors import InputSizeError

PATCH_SIZE = 3
DEFAULT_MAX_CORR_ELEMENTS = 2**29  # 2 GiB of fp32 correlation per chunk, as the original code
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
    if feat_in.shape[-2] < PATCH_SIZE or feat_in.shape[-1] < PATCH_SIZE or min(feat_ref.shape[-2:]) < PATCH_SIZE:
        raise InputSizeError(f'Feature maps must be at least {PATCH_SIZE}x{PATCH_SIZE} to match patches, got '
                             f'{tuple(feat_in.shape[-2:])} and {tuple(feat_ref.shape[-2:])}.')
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


@float32_op
def match_patches(feat_in, feat_ref, max_corr_elements=DEFAULT_MAX_CORR_ELEMENTS):
    """Find, for every 3x3 input patch, the most similar 3x3 ref patch (shifted per-pixel formulation).

    Gives the same matches as :func:`match_patches_direct` up to float rounding (ties aside) with about 9x fewer
    multiply-adds. Ref rows are processed in chunks whose per-pixel product buffer has at most ``max_corr_elements``
    elements.

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

    rows = max(1, max_corr_elements // (batch * height * width * ref_w) - (PATCH_SIZE - 1))
    best = None
    for top in range(0, ref_grid_h, rows):
        bottom = min(top + rows, ref_grid_h)
        ref_rows = feat_ref[:, :, top:bottom + PATCH_SIZE - 1].flatten(2)  # (B, C, (n + 2) W_r)
        products = torch.bmm(in_flat, ref_rows).view(batch, height, width, bottom - top + PATCH_SIZE - 1, ref_w)
        # sum the 9 aligned shifts in two passes of 3: along x (input and ref together), then along y
        n = bottom - top
        along_x = products[:, :, 0:grid_w, :, 0:ref_grid_w] + products[:, :, 1:grid_w + 1, :, 1:ref_grid_w + 1]
        along_x.add_(products[:, :, 2:grid_w + 2, :, 2:ref_grid_w + 2])
        del products
        corr = along_x[:, 0:grid_h, :, 0:n] + along_x[:, 1:grid_h + 1, :, 1:n + 1]
        corr.add_(along_x[:, 2:grid_h + 2, :, 2:n + 2])
        del along_x
        if ref_scale is not None:
            corr.mul_(ref_scale[:, None, None, top:bottom])
        val, idx = corr.view(batch, grid_h * grid_w, -1).max(dim=2)
        best = merge_best(best, (val, idx + top * ref_grid_w))
    best_val, best_idx = best
    if ref_scale is None:
        best_val = best_val / (PATCH_SIZE + 1e-5)
    best_val = best_val / (patch_norms(feat_in).flatten(1) + 1e-5)
    return best_idx.view(batch, grid_h, grid_w), best_val.view(batch, grid_h, grid_w)
