"""What an LR image drew from its references (``frfsr infer --explain``): per-pixel match confidence and source, the
reference warped onto the LR grid, and their summary numbers.

Conventions:

* The matcher gives one match per 3x3 patch of the LR's encoder grid, (h - 2, w - 2) for an (h, w) LR. As
  :func:`~frfsr_plugin.ops.flow.index_to_flow` does, a patch's match belongs to the patch's top-left pixel; the last
  two rows and columns, the top-left corner of no patch, repeat their neighbour's (replicate padding). On the padded
  canvas the matches cover the padded LR and are cropped to the LR. Each LR pixel's value covers its 4x4 SR pixels
  (nearest), so shares of LR pixels are shares of SR pixels.
* The warped reference is the reference canvas (the references side by side as the networks see them,
  ``ops/reference_set.py``; the padded canvas's one, possibly stitched, reference) at HR size, warped with exactly the
  networks' flow: ``upscale_flow(index_to_flow(index, patch_grid_width), 4)``. Where ``index_to_flow`` zero-pads the
  flow (the last two LR rows and columns), it shows the canvas at the pixel's own position, as the networks do.
"""
from typing import NamedTuple

import torch

from frfsr_plugin.data.transforms import SUPPORTED_SCALE
from frfsr_plugin.ops.flow import flow_warp, index_to_flow, upscale_flow
from frfsr_plugin.ops.reference_set import layout_references, place_on_canvas
from frfsr_plugin.utils.errors import OptionError

DEFAULT_THRESHOLD = 0.5  # cosine similarity; the summary's share of pixels above it


class MatchExplanation(NamedTuple):
    """What every pixel of an (h, w) LR image drew from its references.

    Attributes:
        confidence (Tensor): Best cosine similarity of each LR pixel's patch, (B, h, w), float.
        source (Tensor): The reference (0-based, in the set's order) it drew from, (B, h, w), int64.
        warped_ref (Tensor): The reference canvas warped onto the LR grid, at SR size, (B, 3, 4h, 4w).
        num_refs (int): The references on the canvas (1 on the padded canvas).
    """

    confidence: torch.Tensor
    source: torch.Tensor
    warped_ref: torch.Tensor
    num_refs: int


class MatchSummary(NamedTuple):
    """The summary line's numbers, over the LR pixels of all images of the batch.

    Attributes:
        mean_confidence (float): Mean of :attr:`MatchExplanation.confidence`.
        share_above (float): Share of pixels whose confidence exceeds the threshold, in [0, 1].
        shares (tuple[float]): Share of pixels drawn from each reference, in order; they sum to 1.
    """

    mean_confidence: float
    share_above: float
    shares: tuple


def patch_map_to_pixels(patch_map, lr_size):
    """A per-patch map on the LR's patch grid as a per-pixel map of the LR (top-left convention, module docstring).

    Args:
        patch_map (Tensor): (B, h_c - 2, w_c - 2), any dtype, for an LR canvas (h_c, w_c) >= ``lr_size``.
        lr_size (tuple[int, int]): (h, w) of the LR.

    Returns:
        Tensor: (B, h, w): pixel (y, x) takes patch (min(y, h_c - 3), min(x, w_c - 3)).
    """
    rows = torch.arange(lr_size[0], device=patch_map.device).clamp(max=patch_map.shape[-2] - 1)
    cols = torch.arange(lr_size[1], device=patch_map.device).clamp(max=patch_map.shape[-1] - 1)
    return patch_map[:, rows[:, None], cols[None, :]]


def warp_reference(ref, index, lr_size):
    """The reference canvas warped with the networks' flow onto the LR grid, at SR size.

    Args:
        ref (Tensor | Sequence[Tensor]): The reference(s) as restored: one tensor (B, 3, H, W) or a list of them
            (B, 3, H_i, W_i), multiples of 4.
        index (Tensor): :attr:`~frfsr_plugin.ops.reference_set.SetMatches.index`, (B, h_c - 2, w_c - 2).
        lr_size (tuple[int, int]): (h, w) of the LR (<= (h_c, w_c)).

    Returns:
        Tensor: (B, 3, 4h, 4w).
    """
    refs = [ref] if torch.is_tensor(ref) else list(ref)
    layout = layout_references([tuple(side // SUPPORTED_SCALE for side in image.shape[-2:]) for image in refs])
    canvas = place_on_canvas(refs, layout, SUPPORTED_SCALE)
    flow = upscale_flow(index_to_flow(index, layout.patch_grid_width), SUPPORTED_SCALE)
    return flow_warp(canvas, flow.to(canvas.dtype))[..., :SUPPORTED_SCALE * lr_size[0], :SUPPORTED_SCALE * lr_size[1]]


def explain_matches(matches, ref, lr_size):
    """The :class:`MatchExplanation` of a restoration.

    Args:
        matches (SetMatches): :attr:`~frfsr_plugin.restoration.pipeline.Restoration.matches`, (B, h_c - 2, w_c - 2)
            each.
        ref (Tensor | Sequence[Tensor]): The reference(s) as restored (``PreparedInputs.batch['ref']``).
        lr_size (tuple[int, int]): (h, w) of the LR (the padded canvas's LR is cropped to it).

    Returns:
        MatchExplanation
    """
    ref = ref.to(matches.index.device) if torch.is_tensor(ref) else [image.to(matches.index.device) for image in ref]
    return MatchExplanation(
        patch_map_to_pixels(matches.similarity.float(), lr_size), patch_map_to_pixels(matches.source, lr_size),
        warp_reference(ref, matches.index, lr_size), 1 if torch.is_tensor(ref) else len(ref))


def check_threshold(threshold):
    """Stop with one line unless the confidence threshold is a cosine similarity, in [-1, 1]."""
    if not -1 <= threshold <= 1:
        raise OptionError(f'--explain-threshold must lie in [-1, 1] (a cosine similarity), got {threshold}.')


def summarize(explanation, threshold=DEFAULT_THRESHOLD):
    """The summary numbers of an explanation.

    Args:
        explanation (MatchExplanation): Its confidence and source maps, (B, h, w).
        threshold (float): Cosine similarity in [-1, 1]. Default: :data:`DEFAULT_THRESHOLD`.

    Returns:
        MatchSummary
    """
    check_threshold(threshold)
    confidence, source = explanation.confidence, explanation.source
    counts = torch.bincount(source.flatten(), minlength=explanation.num_refs)
    return MatchSummary(confidence.mean().item(), (confidence > threshold).float().mean().item(),
                        tuple((counts / source.numel()).tolist()))
