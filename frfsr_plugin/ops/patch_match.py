"""Dense 3x3 patch matching by cosine similarity (the correspondence search of C2-Matching / FRFSR).

This is the direct formulation: every 3x3 patch of the per-pixel L2-normalised feature map is a ``9 C`` vector,
ref patches are L2-normalised, and the correlation of all input patches with all ref patches is a matrix product,
computed over chunks of ref patches so that the correlation buffer stays under a memory budget.
"""
import torch
import torch.nn.functional as F

from frfsr_plugin.utils.errors import InputSizeError

PATCH_SIZE = 3
DEFAULT_MAX_CORR_ELEMENTS = 2**29  # 2 GiB of fp32 correlation per chunk, as the original code


def match_patches(feat_in, feat_ref, max_corr_elements=DEFAULT_MAX_CORR_ELEMENTS):
    """Find, for every 3x3 input patch, the most similar 3x3 ref patch.

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
    best_val = best_idx = None
    for start in range(0, num_ref, chunk):
        corr = torch.bmm(patches_ref[:, :, start:start + chunk].transpose(1, 2), patches_in)  # (B, n, N_in)
        val, idx = corr.max(dim=1)
        idx = idx + start
        if best_val is None:
            best_val, best_idx = val, idx
        else:
            better = val > best_val  # strict: the earlier chunk wins ties
            best_val = torch.where(better, val, best_val)
            best_idx = torch.where(better, idx, best_idx)
    best_val = best_val / (patches_in.norm(dim=1) + 1e-5)
    grid = (batch, height - PATCH_SIZE + 1, width - PATCH_SIZE + 1)
    return best_idx.view(grid), best_val.view(grid)
