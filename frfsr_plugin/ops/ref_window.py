"""A view of a Ref feature map from the LR grid: the part on the LR (or tile) grid and the whole map to sample.

The FAM's deformable convs sample the raw Ref features at ``p + pre-offset + learned offset``, which may point
anywhere in the Ref, while its offset branch reads the Ref feature at ``p`` itself. So where the Ref map is not the LR
grid's own, each Ref level travels as a :class:`RefWindow`: in tiled restoration (``frfsr_plugin/restoration/
tiling.py``), and when the reference (or reference set) has its own size (:func:`on_lr_grid`).
:class:`~frfsr_plugin.archs.alignment.TextureAlignment` reads it through :func:`split_ref`.
"""
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class RefWindow:
    """A view of one Ref feature level from the LR grid (or one tile of it).

    Attributes:
        local (Tensor): The Ref feature at the grid's own positions, shape (B, C, s th, s tw).
        full (Tensor): The whole map, shape (B, C, H_s, W_s) (the LR grid's size at this level, or the reference's).
        origin (tuple[int, int]): Position (y, x) of ``local[..., 0, 0]`` in ``full``.
    """

    local: torch.Tensor
    full: torch.Tensor
    origin: tuple


def split_ref(ref):
    """(crop for position-wise use, map to sample, origin of the crop in that map) of a Ref feature.

    Args:
        ref (Tensor | RefWindow): A whole Ref feature (B, C, H, W) or a tile's :class:`RefWindow`.

    Returns:
        tuple[Tensor, Tensor, tuple[int, int]]
    """
    if isinstance(ref, RefWindow):
        return ref.local, ref.full, ref.origin
    return ref, ref, (0, 0)


def on_lr_grid(full, size):
    """A Ref feature map of its own size seen from the LR grid at the same level.

    Args:
        full (Tensor): The Ref (or reference-set canvas) feature, shape (B, C, H_s, W_s).
        size (tuple[int, int]): (height, width) of the LR grid at this level.

    Returns:
        Tensor | RefWindow: ``full`` itself when it has the LR grid's size, else a :class:`RefWindow` whose crop is
        ``full`` cut or zero-padded on the bottom/right to ``size`` (the Ref at the same positions, as a Ref padded to a
        common canvas gives it), at origin (0, 0).
    """
    height, width = size
    if tuple(full.shape[-2:]) == (height, width):
        return full
    local = full[..., :height, :width]
    local = F.pad(local, (0, width - local.shape[-1], 0, height - local.shape[-2]))
    return RefWindow(local, full, (0, 0))
