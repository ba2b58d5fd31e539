"""Peak-memory estimates of inference (float32, batch 1, no gradients) and the tile size that fits a budget.

Above the process's baseline (interpreter, torch, weights), one image needs ``FIXED_BYTES`` (first-forward
overheads: thread pools, kernel workspaces) and then has two phases:

* global, over the whole HR canvas of N pixels: contrastive encoder, patch matching, VGG19 Ref features, flows,
  warping and SIFE, ``GLOBAL_BYTES_PER_PIXEL * N`` plus the matcher's chunk buffers (:func:`matching_bytes`, bounded
  by ``max_corr_elements``);
* restoration: the context kept for the tiles (:func:`kept_bytes`, counted from the tensors' channels) plus one
  tile's forward, the generators' bytes per HR pixel (``inference_bytes_per_pixel()`` of the arch) times the tile's
  HR pixels.

The constants are measured on CPU in fresh processes by ``tools/measure_memory.py`` (``ru_maxrss`` minus the resident
memory just before the measured call, at two image sizes: the slope gives the bytes per pixel, the intercept the fixed
part), under the allocator setting of a run under a budget (``utils/cpu_allocator.py::return_freed_cpu_memory``,
which makes the figures repeat to 0.1%), with the reference padded to the LR canvas (the papers' protocol). A
reference of its own size, or a reference set (``ops/reference_set.py``), has a canvas of N_ref HR pixels besides the
LR's N: the two sides peak at different times, so the global phase is charged the larger of
``GLOBAL_BYTES_PER_PIXEL * N`` and ``REF_GLOBAL_BYTES_PER_PIXEL * N_ref`` (the encoder's Ref branch, VGG19 and the
matcher's reference side), plus the Ref features cut to the LR grid (:func:`ref_feature_channels` floats per HR
pixel of the LR), which only a canvas of its own has.
"""
import math
import os
from typing import NamedTuple

from frfsr_plugin.archs.arch_util import generator_bytes_per_pixel
from frfsr_plugin.archs.correspondence_arch import LEVEL_SCALES
from frfsr_plugin.archs.frfsr_arch import REF_CHANNELS
from frfsr_plugin.data.transforms import SUPPORTED_SCALE
from frfsr_plugin.ops.patch_match import matching_plan
from frfsr_plugin.ops.reference_set import layout_references
from frfsr_plugin.restoration.tiling import MIN_TILE_SIZE, tile_spans
from frfsr_plugin.utils.errors import InputSizeError

FLOAT_BYTES = 4
FIXED_BYTES = 40 * 2**20  # measured intercepts 17-35 MB (global phase 20, generators 17-22, torchvision's DCN 35)
GLOBAL_BYTES_PER_PIXEL = 1300  # measured 1177 (encoder, matching less its chunks, VGG19, flows, warping, SIFE), +10%
REF_GLOBAL_BYTES_PER_PIXEL = 900  # per HR pixel of a reference canvas of its own size: measured 793-832, +8%
PRE_OFFSET_CHANNELS = 18


def matching_bytes(lr_size, max_corr_elements, ref_grid_sizes=None):
    """Peak bytes of the matcher's buffers (``ops/patch_match.py::matching_plan``), batch 1.

    Args:
        lr_size (tuple[int, int]): (h, w) of the LR canvas.
        max_corr_elements (int): The matcher's budget in elements (0: the smallest plan, one Ref patch row per chunk).
        ref_grid_sizes (Sequence[tuple[int, int]] | None): (h_i, w_i) of each reference's encoder features, matched
            one after the other; None: one reference of the LR canvas's size. Default: None.

    Returns:
        int: Bytes (of the largest reference's plan).
    """
    sizes = ref_grid_sizes or [lr_size]
    return FLOAT_BYTES * max(matching_plan(1, lr_size, size, max_corr_elements)[2] for size in sizes)


def largest_corr_elements(lr_size, available, ref_grid_sizes=None):
    """The largest matcher budget (elements) that fits ``available`` bytes; 0 if not even the smallest plan fits."""
    elements = int(available // FLOAT_BYTES)
    return elements if elements >= matching_bytes(lr_size, 0, ref_grid_sizes) // FLOAT_BYTES else 0


def ref_feature_channels():
    """Channels of the VGG19 Ref features (relu1_1, relu2_1, relu3_1) per HR pixel of the Ref."""
    hr_fraction = [(scale / max(LEVEL_SCALES))**2 for scale in LEVEL_SCALES]  # pixels of each level per HR pixel
    return sum(channels * fraction for channels, fraction in zip(REF_CHANNELS, hr_fraction))


def kept_bytes_per_pixel(sife_channels, num_outputs):
    """Bytes per HR canvas pixel alive while tiles run: images, context and the blended outputs.

    Args:
        sife_channels (int): Channels of the SIFE feature (0 without SIFE).
        num_outputs (int): SR images produced (1 for stage 1, 2 for the two-stage model).

    Returns:
        float: Bytes per HR pixel.
    """
    hr_fraction = [(scale / max(LEVEL_SCALES))**2 for scale in LEVEL_SCALES]  # pixels of each level per HR pixel
    ref_and_warped = 2 * ref_feature_channels()
    pre_offsets = PRE_OFFSET_CHANNELS * sum(hr_fraction)
    images = 3 + 3 + 3 / 16  # lq_up, Ref, lq
    return FLOAT_BYTES * (ref_and_warped + pre_offsets + sife_channels / 16 + images + 3 * num_outputs)


def global_phase_bytes(lr_pixels, canvas_pixels=None):
    """Peak bytes of the global phase less the matcher's buffers (see the module docstring).

    Args:
        lr_pixels (int): HR pixels of the LR canvas (16 h w).
        canvas_pixels (int | None): HR pixels of a reference canvas of its own size; None: the reference lies on the
            LR canvas (the papers' padded protocol). Default: None.

    Returns:
        float: Bytes.
    """
    if canvas_pixels is None:
        return GLOBAL_BYTES_PER_PIXEL * lr_pixels
    on_lr_grid = FLOAT_BYTES * ref_feature_channels() * lr_pixels
    return max(GLOBAL_BYTES_PER_PIXEL * lr_pixels, REF_GLOBAL_BYTES_PER_PIXEL * canvas_pixels) + on_lr_grid


def kept_bytes(lr_pixels, sife_channels, num_outputs, canvas_pixels=None):
    """Bytes alive while tiles run (:func:`kept_bytes_per_pixel`) for an LR and a reference canvas of their own sizes.

    Args:
        lr_pixels (int): HR pixels of the LR canvas (16 h w).
        sife_channels (int): Channels of the SIFE feature (0 without SIFE).
        num_outputs (int): SR images produced.
        canvas_pixels (int | None): HR pixels of the reference canvas; None: the reference lies on the LR canvas (the
            papers' padded protocol). Default: None.

    Returns:
        float: Bytes. A canvas of its own adds its Ref image and features beyond the LR canvas's pixels, and the
        Ref features cut to the LR grid for the FAMs' offset branches (``ops/ref_window.py::on_lr_grid``).
    """
    kept = kept_bytes_per_pixel(sife_channels, num_outputs) * lr_pixels
    if canvas_pixels is None:
        return kept
    ref_per_pixel = FLOAT_BYTES * (ref_feature_channels() + 3)
    return kept + ref_per_pixel * (canvas_pixels - lr_pixels) + FLOAT_BYTES * ref_feature_channels() * lr_pixels


def resident_bytes(device='cpu'):
    """Memory in use now: the process's resident set on CPU (0 without ``/proc``), allocated tensors on CUDA."""
    if str(device).startswith('cuda'):
        import torch
        return torch.cuda.memory_allocated(device)
    try:
        with open('/proc/self/statm', encoding='ascii') as statm:
            return int(statm.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')
    except OSError:
        return 0


def tile_pixels(lr_size, size, overlap):
    """LR pixels of the largest tile of a canvas (:func:`~.tiling.tile_spans`); the canvas if it is one tile."""
    return math.prod(max(stop - start for start, stop in tile_spans(length, size, overlap)) for length in lr_size)


def largest_tile(available, bytes_per_pixel, lr_size, min_size, overlap, scale=SUPPORTED_SCALE):
    """The largest tile size (LR pixels) whose biggest tile's forward fits ``available`` bytes.

    Args:
        available (float): Bytes left for one tile's forward.
        bytes_per_pixel (float): Peak bytes per HR pixel of the tile's forward.
        lr_size (tuple[int, int]): (h, w) of the LR canvas.
        min_size (int): Smallest acceptable tile size (the whole canvas is always acceptable).
        overlap (int): LR pixels shared by neighbouring tiles.
        scale (int): HR pixels per LR pixel along each side. Default: 4.

    Returns:
        int: The tile size, ``max(h, w)`` when the whole canvas fits, 0 when not even ``min_size`` fits.
    """
    whole = max(lr_size)
    for size in range(whole, min(min_size, whole) - 1, -1):
        if bytes_per_pixel * scale**2 * tile_pixels(lr_size, size, overlap) <= available:
            return size
    return 0


class MemoryBudget(NamedTuple):
    """A peak-memory budget in bytes: the whole process may reach ``total``; ``baseline`` is in use before the image
    (interpreter, torch, the networks)."""

    total: float
    baseline: float


def describe_references(reference, canvas_size):
    """``reference 'a.png' (500x332, HR canvas 500x332)`` or ``reference set of 2 'a.png', 'b.png' (...)``.

    Args:
        reference (tuple): (name, (H, W)) of one reference, or (names, sizes) of a set, sizes as given.
        canvas_size (tuple[int, int]): (H, W) of the HR canvas the reference is matched on.

    Returns:
        str
    """
    names, sizes = reference
    if isinstance(names, str):
        names, sizes = [names], [sizes]
    noun = 'reference' if len(names) == 1 else f'reference set of {len(names)}'
    quoted = ', '.join(f"'{name}'" for name in names)
    shapes = ', '.join(f'{width}x{height}' for height, width in sizes)
    return f'{noun} {quoted} ({shapes}, HR canvas {canvas_size[1]}x{canvas_size[0]})'


def plan_restoration(lr_size,
                     networks,
                     sife_channels,
                     budget,
                     max_corr_elements,
                     tile_size,
                     overlap,
                     reference,
                     ref_grid_sizes=None,
                     scale=SUPPORTED_SCALE):
    """Tile size and matching chunk of one image under a memory budget (a pure function of sizes and networks).

    Args:
        lr_size (tuple[int, int]): (h, w) of the LR canvas (padded in the papers' protocol).
        networks (tuple[nn.Module]): The restoration networks, bare (Net1, then the generator).
        sife_channels (int): Channels of the SIFE feature in the context (0 without SIFE).
        budget (MemoryBudget): The budget.
        max_corr_elements (int): The matcher's largest chunk (its budget without a memory limit).
        tile_size (int | None): A tile size fixed by the user, or None to choose the largest that fits.
        overlap (int): LR pixels shared by neighbouring tiles.
        reference (tuple): The reference's name and (H, W) as given, or the names and sizes of a reference set, for
            the error message (:func:`describe_references`).
        ref_grid_sizes (Sequence[tuple[int, int]] | None): (h_i, w_i) of each reference's encoder features (its
            mod-cropped size / 4) when the references keep their own sizes; None: one reference padded to the LR
            canvas. Default: None.
        scale (int): HR pixels per LR pixel along each side. Default: 4.

    Returns:
        tuple[int | None, int]: The tile size in LR pixels (None: the whole canvas) and the matcher's
        ``max_corr_elements``.

    Raises:
        InputSizeError: The correspondence (or, with ``tile_size`` given or a generator that cannot be tiled, the
            restoration) does not fit the budget.
    """
    pixels = scale**2 * lr_size[0] * lr_size[1]
    canvas = tuple(lr_size) if ref_grid_sizes is None else layout_references(ref_grid_sizes).size
    # a canvas of the LR's size is the padded protocol's case, whatever the route (ops/ref_window.py::on_lr_grid)
    canvas_pixels = None if canvas == tuple(lr_size) else scale**2 * canvas[0] * canvas[1]
    available = budget.total - budget.baseline - FIXED_BYTES
    global_bytes = global_phase_bytes(pixels, canvas_pixels)
    corr_elements = min(max_corr_elements, largest_corr_elements(lr_size, available - global_bytes, ref_grid_sizes))

    def too_big(part, needed):
        fewer = ', use fewer references' if not isinstance(reference[0], str) and len(reference[0]) > 1 else ''
        return InputSizeError(
            f'{describe_references(reference, (scale * canvas[0], scale * canvas[1]))}: {part} needs about '
            f'{(budget.baseline + FIXED_BYTES + needed) / 2**20:.0f} MB, over the budget of '
            f'{budget.total / 2**20:.0f} MB (of which the networks use {budget.baseline / 2**20:.0f} MB); downscale '
            f'the reference (or the LR){fewer} or raise --max-memory-mb.')

    if corr_elements == 0:
        raise too_big('the correspondence (matching, VGG features, SIFE)',
                      global_bytes + matching_bytes(lr_size, 0, ref_grid_sizes))
    kept = kept_bytes(pixels, sife_channels, len(networks), canvas_pixels)
    tile_bytes_per_pixel = max(generator_bytes_per_pixel(net) for net in networks)
    tileable = all(getattr(net, 'supports_tiling', False) for net in networks)
    if tile_size is not None:
        needed = kept + tile_bytes_per_pixel * scale**2 * tile_pixels(lr_size, tile_size, overlap)
        if needed > available:
            raise too_big(f'restoration in tiles of {tile_size}', needed)
        return tile_size, corr_elements
    min_size = max(MIN_TILE_SIZE, 3 * overlap) if tileable else max(lr_size)
    size = largest_tile(available - kept, tile_bytes_per_pixel, lr_size, min_size, overlap, scale)
    if size == 0:
        smallest = scale**2 * tile_pixels(lr_size, min_size, overlap)
        part = 'restoration in the smallest tiles' if tileable else (
            f'restoration (whole image: {type(networks[-1]).__name__} cannot be tiled)')
        raise too_big(part, kept + tile_bytes_per_pixel * smallest)
    return (None if size >= max(lr_size) else size), corr_elements
