"""Tiled restoration: a RefSR generator runs on overlapping LR tiles, with its context computed once per image.

Shapes. The LR canvas is (B, 3, h, w). Every tensor of the generator's context lies on the LR grid at an integer scale
s, i.e. has the shape (B, C, s h, s w): ``pre_offsets``, ``ref_feats`` and ``warped_ref_feats`` (tuples over
s = 4, 2, 1), ``sife_feat`` (s = 1) and, in stage 2, ``reuse_feat`` (s = 4). The tile ``[top, bottom) x [left,
right)`` of the LR receives each of them cropped to ``[s top, s bottom) x [s left, s right)``, with one exception: the
FAM's deformable convs sample the raw Ref features at ``p + pre-offset + learned offset``, which may point anywhere in
the Ref, so the entries of ``ref_feats`` become :class:`~frfsr_plugin.ops.ref_window.RefWindow` (the crop for the
position-wise offset branch, the whole map for sampling, and the crop's origin); a reference of its own size arrives
as a ``RefWindow`` already, whose LR-grid part is cropped and whose whole map is kept. A generator declares that it
can be tiled with the class attribute ``supports_tiling = True``: it must be fully convolutional and read
``ref_feats`` only through :class:`~frfsr_plugin.archs.alignment.TextureAlignment`.

Tiles. Each axis is split into near-equal cores of at most ``size - overlap`` pixels; a tile is its core widened by
half the overlap towards each neighbour, so neighbouring tiles share ``overlap`` pixels. In that shared band the
outer quarters (next to a tile's edge) are dropped and across its central half the outputs are blended linearly.
With ``size >= 3 overlap`` and ``size >= 32`` only neighbours overlap and every tile has 15 to ``size`` pixels.

Exactness. The deformable convs and everything position-wise equal the whole-canvas computation, and so does a
network whose receptive field fits in the dropped quarter of the band (tested). Two operations of FRFSR's TAAM are
not local: the DDF channel branch pools globally (per tile instead of per image), and ESA's attention map is pooled
with stride 6 and stretched back to the input size, so its alignment depends on the tile's size and position. Their
effect on the SR is measured in ``tests/test_tiling.py`` (below one 8-bit level for tiny random networks).
"""
import torch

from frfsr_plugin.data.transforms import SUPPORTED_SCALE
from frfsr_plugin.ops.ref_window import RefWindow
from frfsr_plugin.utils.errors import OptionError

MIN_TILE_SIZE = 32  # LR pixels; every tile is then at least 15 pixels, as ESA needs
DEFAULT_TILE_OVERLAP = 16  # LR pixels
SAMPLED_CONTEXT_KEYS = ('ref_feats', )  # sampled anywhere by deformable convs: passed whole, as RefWindow


def parse_tile_options(tile, option='val.tile'):
    """Validate tile options.

    Args:
        tile (dict | None): ``{size: int, overlap: int}`` in LR pixels, both optional: ``size`` absent, None or 0
            for the whole canvas (a memory budget may still choose one), ``overlap`` default 16.
        option (str): Name used in error messages.

    Returns:
        tuple[int | None, int]: (size or None, overlap).
    """
    tile = {} if tile is None else tile
    if not isinstance(tile, dict) or set(tile) - {'size', 'overlap'}:
        raise OptionError(f'{option} must be {{size: <LR pixels>, overlap: <LR pixels>}}, got {tile!r}.')
    size, overlap = tile.get('size') or None, tile.get('overlap', DEFAULT_TILE_OVERLAP)
    if not isinstance(overlap, int) or overlap < 0:
        raise OptionError(f'{option}: overlap must be a non-negative integer (LR pixels), got {overlap!r}.')
    if size is not None and (not isinstance(size, int) or size < max(MIN_TILE_SIZE, 3 * overlap)):
        raise OptionError(f'{option}: size must be an integer of at least {MIN_TILE_SIZE} and 3 x overlap '
                          f'(LR pixels); got size {size!r}, overlap {overlap}.')
    return size, overlap


def check_supports_tiling(net, option='val.tile'):
    """Raise :class:`OptionError` unless ``net`` (a bare module, not a DDP wrapper) declares ``supports_tiling``."""
    if not getattr(net, 'supports_tiling', False):
        raise OptionError(f'{option}: {type(net).__name__} cannot be restored in tiles (it does not declare '
                          '`supports_tiling`); remove the tile option or raise the memory budget.')


def tile_spans(length, size, overlap):
    """Tiles along one axis.

    Args:
        length (int): Canvas length in LR pixels.
        size (int): Largest tile, >= ``MIN_TILE_SIZE``.
        overlap (int): Pixels shared by neighbouring tiles, <= ``size / 3``.

    Returns:
        list[tuple[int, int]]: (start, stop) of each tile, in order; one tile when ``length <= size``.
    """
    if length <= size:
        return [(0, length)]
    count = -(-length // (size - overlap))
    bounds = [index * length // count for index in range(count + 1)]
    before, after = overlap // 2, overlap - overlap // 2
    return [(bounds[i] - (before if i else 0), bounds[i + 1] + (after if i < count - 1 else 0)) for i in range(count)]


def blend_weights(spans, scale, dtype=torch.float32, device='cpu'):
    """Per-tile output weights along one axis.

    In the band shared by two neighbours, the outer quarter on each side (next to a tile's edge, where zero padding
    and border clamping differ from the whole canvas) gets weight 0 and the central half a linear ramp.

    Args:
        spans (list[tuple[int, int]]): Tiles from :func:`tile_spans`.
        scale (int): Output pixels per LR pixel.

    Returns:
        list[Tensor]: One weight vector of length ``scale * (stop - start)`` per tile; at every output position the
        weights of the tiles covering it sum to one.
    """

    def ramp(band):  # rises from 0 to 1 across the central half of a shared band of ``band`` output pixels
        positions = torch.arange(band, dtype=dtype, device=device) + 0.5
        return ((positions - band / 4) / (band / 2)).clamp(0, 1)

    weights = []
    for index, (start, stop) in enumerate(spans):
        weight = torch.ones(scale * (stop - start), dtype=dtype, device=device)
        if index > 0:
            band = scale * (spans[index - 1][1] - start)
            weight[:band] = ramp(band)
        if index < len(spans) - 1:
            band = scale * (stop - spans[index + 1][0])
            weight[weight.numel() - band:] = ramp(band).flip(0)
        weights.append(weight)
    return weights


def crop_context(context, window, lr_size):
    """A tile's context: every tensor cropped to the tile at its scale, ``ref_feats`` as :class:`RefWindow`.

    Args:
        context (dict): Whole-canvas context; values are tensors (B, C, s h, s w), ``RefWindow`` whose crop is such a
            tensor, tuples of them, or anything else (passed unchanged).
        window (tuple[int, int, int, int]): (top, bottom, left, right) of the tile in LR pixels.
        lr_size (tuple[int, int]): (h, w) of the LR canvas.

    Returns:
        dict: The tile's context, same keys.
    """

    def bounds(key, value):  # the tile's window at the scale of ``value``, a tensor on the LR grid
        scale = value.shape[-2] // lr_size[0]
        if scale < 1 or tuple(value.shape[-2:]) != (scale * lr_size[0], scale * lr_size[1]):
            raise ValueError(f'context[{key!r}] of shape {tuple(value.shape)} is not on a multiple of the LR grid '
                             f'{tuple(lr_size)}, so it cannot be cut into tiles.')
        return tuple(scale * bound for bound in window)

    def crop(key, value):
        if isinstance(value, (tuple, list)):
            return type(value)(crop(key, item) for item in value)
        if isinstance(value, RefWindow):  # a reference of its own size: crop its LR-grid part, keep the whole map
            top, bottom, left, right = bounds(key, value.local)
            return RefWindow(value.local[..., top:bottom, left:right], value.full,
                             (value.origin[0] + top, value.origin[1] + left))
        if not torch.is_tensor(value):
            return value
        top, bottom, left, right = bounds(key, value)
        local = value[..., top:bottom, left:right]
        return RefWindow(local, value, (top, left)) if key in SAMPLED_CONTEXT_KEYS else local

    return {key: crop(key, value) for key, value in context.items()}


def restore_in_tiles(restore, lq, context, size, overlap, scale=SUPPORTED_SCALE):
    """Run ``restore`` on overlapping tiles of ``lq`` and blend the outputs.

    Args:
        restore (callable): ``restore(lq_tile, context_tile)`` -> dict of outputs (B, C_k, scale th, scale tw) for an
            LR tile (B, 3, th, tw).
        lq (Tensor): LR canvas, shape (B, 3, h, w).
        context (dict): The whole canvas's context (see the module docstring).
        size (int): Largest tile in LR pixels; a canvas no larger runs in one piece, exactly as without tiling.
        overlap (int): LR pixels shared by neighbouring tiles.
        scale (int): Output pixels per LR pixel. Default: 4.

    Returns:
        dict: The outputs for the whole canvas, (B, C_k, scale h, scale w).
    """
    height, width = lq.shape[-2:]
    spans_y, spans_x = tile_spans(height, size, overlap), tile_spans(width, size, overlap)
    if len(spans_y) == len(spans_x) == 1:
        return restore(lq, context)
    weights_y = blend_weights(spans_y, scale, lq.dtype, lq.device)
    weights_x = blend_weights(spans_x, scale, lq.dtype, lq.device)
    outputs = {}
    for (top, bottom), weight_y in zip(spans_y, weights_y):
        for (left, right), weight_x in zip(spans_x, weights_x):
            tile_outputs = restore(lq[..., top:bottom, left:right],
                                   crop_context(context, (top, bottom, left, right), (height, width)))
            weight = weight_y[:, None] * weight_x[None, :]
            for name, tile in tile_outputs.items():
                if name not in outputs:
                    outputs[name] = tile.new_zeros(*tile.shape[:2], scale * height, scale * width)
                outputs[name][..., scale * top:scale * bottom, scale * left:scale * right].add_(tile * weight)
    return outputs
