"""A tile's view of a Ref feature map: the crop on the tile's grid and the whole map that deformable convs sample.

In tiled restoration (``frfsr_plugin/restoration/tiling.py``) the FAM's deformable convs sample the raw Ref features
at ``p + pre-offset + learned offset``, which may point anywhere in the Ref, so a tile receives each Ref level as a
:class:`RefWindow`; :class:`~frfsr_plugin.archs.alignment.TextureAlignment` reads it through :func:`split_ref`.
"""
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class RefWindow:
    """A tile's view of one Ref feature level.

    Attributes:
        local (Tensor): The crop on the tile's grid, shape (B, C, s th, s tw).
        full (Tensor): The whole map, shape (B, C, s h, s w).
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
