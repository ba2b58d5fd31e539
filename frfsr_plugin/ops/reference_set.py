"""Several references as one reference set: their layout on one feature canvas and their merged patch matches.

Each reference keeps its own size and is encoded and matched on its own; only the results meet on a common canvas:

* :func:`layout_references` puts the references side by side (top-aligned, in the given order) on a canvas of the
  matching grid (the encoder's grid, 1/4 of the HR image), :data:`REFERENCE_GAP` zero columns apart, so that the
  deformable convs, which sample the canvas around the matched positions, meet zeros rather than the neighbouring
  reference at a reference's edge;
* :func:`place_on_canvas` copies per-reference feature maps of one level (scale ``s`` of the matching grid) onto it;
* :func:`merge_matches` takes, for every LR patch, the best of the per-reference matches (the first reference wins
  ties) and re-expresses its index on the canvas's patch grid. Matching per reference means that no patch can
  straddle two references or the gap.
"""
from typing import NamedTuple

import torch

from frfsr_plugin.ops.patch_match import PATCH_SIZE

REFERENCE_GAP = 4  # matching-grid columns between two references: 16 HR pixels at relu1_1, 4 at relu3_1


class ReferenceLayout(NamedTuple):
    """Where the references of a set lie on the canvas, in matching-grid pixels.

    Attributes:
        boxes (tuple[tuple[int, int, int, int]]): (top, left, height, width) of each reference.
        size (tuple[int, int]): (height, width) of the canvas.
    """

    boxes: tuple
    size: tuple

    @property
    def patch_grid_width(self):
        """Width of the canvas's 3x3 patch grid, on which merged match indices are row-major."""
        return self.size[1] - PATCH_SIZE + 1


def layout_references(sizes, gap=REFERENCE_GAP):
    """Side-by-side layout of references of the given sizes.

    Args:
        sizes (Sequence[tuple[int, int]]): (height, width) of each reference's feature map, in order.
        gap (int): Zero columns between neighbours. Default: :data:`REFERENCE_GAP`.

    Returns:
        ReferenceLayout: One reference alone fills the canvas exactly.
    """
    boxes, left = [], 0
    for height, width in sizes:
        boxes.append((0, left, int(height), int(width)))
        left += int(width) + gap
    return ReferenceLayout(tuple(boxes), (max(box[2] for box in boxes), left - gap))


def place_on_canvas(maps, layout, scale):
    """Feature maps of one level, one per reference, on the canvas at that level.

    Args:
        maps (Sequence[Tensor]): Map i of shape (B, C, s h_i, s w_i), (h_i, w_i) the size of box i.
        layout (ReferenceLayout): The set's layout.
        scale (int): s, pixels of this level per matching-grid pixel.

    Returns:
        Tensor: (B, C, s H, s W), zero outside the boxes; the map itself when it is the only one.
    """
    if len(maps) == 1:
        return maps[0]
    canvas = maps[0].new_zeros(*maps[0].shape[:2], scale * layout.size[0], scale * layout.size[1])
    for feature, (top, left, height, width) in zip(maps, layout.boxes):
        canvas[..., scale * top:scale * (top + height), scale * left:scale * (left + width)] = feature
    return canvas


class SetMatches(NamedTuple):
    """The best match of every LR patch over all patches of all references of a set.

    Attributes:
        index (Tensor): Row-major index on the canvas's patch grid (:attr:`ReferenceLayout.patch_grid_width`), shape
            (B, h - 2, w - 2), int64.
        similarity (Tensor): Cosine similarity of the best pair, shape (B, h - 2, w - 2).
        source (Tensor): Which reference (0-based, in the set's order) it lies in, shape (B, h - 2, w - 2), int64.
    """

    index: torch.Tensor
    similarity: torch.Tensor
    source: torch.Tensor


def merge_matches(matches, layout):
    """Merge per-reference matches into matches on the canvas.

    Args:
        matches (Sequence[tuple[Tensor, Tensor]]): (index, similarity) of each reference from a matcher of
            ``ops/patch_match.py``: index row-major on that reference's patch grid, both (B, h - 2, w - 2).
        layout (ReferenceLayout): The set's layout.

    Returns:
        SetMatches: Strictly better matches replace earlier ones, so ties go to the earlier reference.
    """
    best = None
    for number, ((index, similarity), (top, left, _, width)) in enumerate(zip(matches, layout.boxes)):
        grid_width = width - PATCH_SIZE + 1
        rows = torch.div(index, grid_width, rounding_mode='floor')
        canvas_index = (rows + top) * layout.patch_grid_width + (index - rows * grid_width + left)
        candidate = SetMatches(canvas_index, similarity, torch.full_like(index, number))
        if best is None:
            best = candidate
            continue
        better = candidate.similarity > best.similarity
        best = SetMatches(*(torch.where(better, new, old) for new, old in zip(candidate, best)))
    return best
