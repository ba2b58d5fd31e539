"""Super-resolve users' own LR images with their own references, at any size (Python API of ``frfsr infer``)."""
import copy
import logging

import numpy as np
import torch
from basicsr.models import build_model
from basicsr.utils import get_root_logger, img2tensor, tensor2img

from frfsr_plugin.archs.arch_util import generator_bytes_per_pixel
from frfsr_plugin.data.transforms import mod_crop, pad_to, pil_bicubic_resize
from frfsr_plugin.restoration import memory
from frfsr_plugin.restoration.tiling import MIN_TILE_SIZE, parse_tile_options
from frfsr_plugin.utils.errors import InputSizeError, MissingFileError, OptionError
from frfsr_plugin.utils.options import load_plugins

SCALE = 4
MIN_LR_SIZE = 15


def stitch_references(refs):
    """Several references side by side: each PIL-bicubic resized to the tallest one's height (aspect kept).

    Args:
        refs (list[ndarray]): (H_i, W_i, 3) RGB uint8 images.

    Returns:
        ndarray: (max H_i, sum W_i', 3) RGB uint8.
    """
    height = max(ref.shape[0] for ref in refs)
    resized = [pil_bicubic_resize(ref, (height, round(ref.shape[1] * height / ref.shape[0]))) for ref in refs]
    return np.concatenate(resized, axis=1)


def to_batch(img, device):
    """(H, W, 3) RGB uint8 -> (1, 3, H, W) float in [0, 1] on ``device``."""
    return img2tensor(img.astype(np.float32) / 255.0, bgr2rgb=False, float32=True).unsqueeze(0).to(device)


class RefSRInferencer:
    """Runs a trained RefSR model (stage 1 or two-stage) on one LR image and one reference of any sizes.

    The networks, the frozen parts and (for the feature reuse framework) Net1 are built exactly as for ``basicsr test``
    from a training or test options YAML (for instance the copy that ``basicsr train`` leaves in
    ``experiments/<name>/``); ``weights`` is a generator checkpoint written by ``basicsr train``.

    Sizes: the HR canvas is 4x the LR; the Ref is mod-cropped to a multiple of 4; both are zero-padded on the
    bottom/right to a common size (as the test datasets do), and the SR is cropped back to 4x the LR.

    Memory: the restoration networks may run on overlapping LR tiles (``tile``, or ``val.tile`` in the YAML) with the
    correspondence computed once for the whole image (``restoration/tiling.py``). With ``max_memory_mb`` the
    peak memory of each image is estimated (``restoration/memory.py``): without an explicit tile size, the largest
    tile that fits is chosen (no tiling when the whole image fits), the matching chunk is shrunk to fit, and an image
    whose correspondence alone does not fit raises :class:`InputSizeError`.

    Args:
        opt_path (str): Options YAML that defines ``model_type`` and the ``network_*`` entries.
        weights (str): Generator checkpoint (``params_ema`` is used when present, else ``params``).
        device (str): ``'cpu'`` or ``'cuda'``. Default: ``'cpu'``.
        max_corr_elements (int | None): Memory budget of one matching chunk; None keeps the YAML's. Default: None.
        tile (int | None): Tile size in LR pixels (>= 32), 0 for none; None keeps ``val.tile`` of the YAML.
            Default: None.
        tile_overlap (int | None): LR pixels shared by neighbouring tiles (<= tile / 3); None keeps the YAML's or 16.
            Default: None.
        max_memory_mb (float | None): Peak memory budget in MiB: the process's resident memory on CPU, allocated
            tensors on CUDA. Default: None (no budget).
    """

    def __init__(self,
                 opt_path,
                 weights,
                 device='cpu',
                 max_corr_elements=None,
                 tile=None,
                 tile_overlap=None,
                 max_memory_mb=None):
        get_root_logger(log_level=logging.WARNING)  # BasicSR logs every network it builds at INFO
        opt = load_plugins(opt_path)
        if 'network_g' not in opt or 'model_type' not in opt:
            raise OptionError(f"{opt_path}: an options file with `model_type` and `network_g` is needed.")
        try:
            state = torch.load(weights, map_location='cpu', weights_only=True)
        except FileNotFoundError as error:
            raise MissingFileError(f"weights file '{weights}' not found (a net_g_*.pth written by basicsr train).") \
                from error
        param_key = 'params_ema' if isinstance(state, dict) and 'params_ema' in state else 'params'
        opt = copy.deepcopy(opt)
        opt.update(is_train=False, dist=False, rank=0, world_size=1, num_gpu=0 if device == 'cpu' else 1)
        opt['path'] = dict(opt.get('path') or {}, pretrain_network_g=weights, strict_load_g=True, param_key_g=param_key)
        if max_corr_elements is not None:
            opt['network_map']['max_corr_elements'] = int(max_corr_elements)
        tile_opt = dict((opt.get('val') or {}).get('tile') or {})
        tile_opt.update({key: value for key, value in (('size', tile), ('overlap', tile_overlap)) if value is not None})
        self.tile_size, self.tile_overlap = parse_tile_options(tile_opt, '--tile/--tile-overlap (val.tile)')
        if max_memory_mb is not None and max_memory_mb <= 0:
            raise OptionError(f'--max-memory-mb must be positive, got {max_memory_mb}.')
        self.max_memory = None if max_memory_mb is None else max_memory_mb * 2**20
        opt['val'] = dict(opt.get('val') or {})
        self.model = build_model(opt)
        self.corr_elements = self.model.net_map.max_corr_elements
        self.baseline_memory = memory.resident_bytes(self.model.device)

    def prepare(self, lr, ref):
        """Pad LR (h, w) and Ref to a common HR canvas; returns the model batch and the output size (4h, 4w)."""
        height, width = lr.shape[:2]
        if min(height, width) < MIN_LR_SIZE:
            raise InputSizeError(f'the LR image is {width}x{height}; FRFSR needs at least {MIN_LR_SIZE}x{MIN_LR_SIZE}.')
        ref = mod_crop(ref, SCALE)
        canvas_h, canvas_w = max(SCALE * height, ref.shape[0]), max(SCALE * width, ref.shape[1])
        lr_padded = pad_to(lr, canvas_h // SCALE, canvas_w // SCALE)
        lq_up = pil_bicubic_resize(lr_padded, (canvas_h, canvas_w))
        device = self.model.device
        batch = {
            'lq': to_batch(lr_padded, device),
            'lq_up': to_batch(lq_up, device),
            'ref': to_batch(pad_to(ref, canvas_h, canvas_w), device)
        }
        return batch, (SCALE * height, SCALE * width)

    def plan(self, lr_size, ref_size, ref_name='the reference'):
        """Tile size and matching chunk of one image under the memory budget.

        Args:
            lr_size (tuple[int, int]): (h, w) of the padded LR canvas.
            ref_size (tuple[int, int]): (H, W) of the reference as given, for the error message.
            ref_name (str): The reference's file name, for the error message.

        Returns:
            tuple[int | None, int]: The tile size in LR pixels (None: the whole canvas) and the matcher's
            ``max_corr_elements``.

        Raises:
            InputSizeError: The correspondence (or, with ``tile`` given or a generator that cannot be tiled, the
                restoration) does not fit the budget.
        """
        if self.max_memory is None:
            return self.tile_size, self.corr_elements
        model = self.model
        networks = model.restoration_networks(getattr(model, 'net_g_ema', model.net_g))
        networks = [model.get_bare_model(net) for net in networks]
        pixels = SCALE**2 * lr_size[0] * lr_size[1]
        available = self.max_memory - self.baseline_memory
        global_bytes = memory.GLOBAL_BYTES_PER_PIXEL * pixels
        corr_elements = min(self.corr_elements, memory.largest_corr_elements(lr_size, available - global_bytes))

        def too_big(part, needed):
            canvas = f'{SCALE * lr_size[1]}x{SCALE * lr_size[0]}'
            return InputSizeError(
                f"reference '{ref_name}' ({ref_size[1]}x{ref_size[0]}, HR canvas {canvas}): {part} needs about "
                f'{needed / 2**20:.0f} MB, over the budget of {self.max_memory / 2**20:.0f} MB (of which the '
                f'networks use {self.baseline_memory / 2**20:.0f} MB); downscale the reference (or the LR) or '
                'raise --max-memory-mb.')

        if corr_elements == 0:
            needed = global_bytes + memory.matching_bytes(lr_size, 0)
            raise too_big('the correspondence (matching, VGG features, SIFE)', self.baseline_memory + needed)
        sife_channels = model.net_sife.conv_first.out_channels if model.net_sife is not None else 0  # RRDB trunk
        kept = memory.kept_bytes_per_pixel(sife_channels, len(networks)) * pixels
        tile_bytes_per_pixel = max(generator_bytes_per_pixel(net) for net in networks)
        tileable = all(getattr(net, 'supports_tiling', False) for net in networks)
        if self.tile_size is not None:
            needed = kept + tile_bytes_per_pixel * SCALE**2 * memory.tile_pixels(lr_size, self.tile_size,
                                                                                 self.tile_overlap)
            if needed > available:
                raise too_big(f'restoration in tiles of {self.tile_size}', self.baseline_memory + needed)
            return self.tile_size, corr_elements
        min_size = max(MIN_TILE_SIZE, 3 * self.tile_overlap) if tileable else max(lr_size)
        size = memory.largest_tile(available - kept, tile_bytes_per_pixel, lr_size, min_size, self.tile_overlap, SCALE)
        if size == 0:
            smallest = SCALE**2 * memory.tile_pixels(lr_size, min_size, self.tile_overlap)
            part = 'restoration in the smallest tiles' if tileable else (
                f'restoration (whole image: {type(networks[-1]).__name__} cannot be tiled)')
            raise too_big(part, self.baseline_memory + kept + tile_bytes_per_pixel * smallest)
        return (None if size >= max(lr_size) else size), corr_elements

    @torch.no_grad()
    def __call__(self, lr, ref, ref_name='the reference'):
        """
        Args:
            lr (ndarray): LR image, (h, w, 3) RGB uint8, h and w >= 15.
            ref (ndarray | list[ndarray]): Reference, (H_r, W_r, 3) RGB uint8, any size; several references are
                stitched side by side (:func:`stitch_references`).
            ref_name (str): The reference's file name, for memory-budget errors. Default: ``'the reference'``.

        Returns:
            ndarray: SR image, (4h, 4w, 3) RGB uint8.
        """
        if isinstance(ref, (list, tuple)):
            ref = stitch_references(ref)
        batch, (height, width) = self.prepare(lr, ref)
        tile_size, self.model.net_map.max_corr_elements = self.plan(batch['lq'].shape[-2:], ref.shape[:2], ref_name)
        self.model.opt['val']['tile'] = {'size': tile_size, 'overlap': self.tile_overlap}
        self.model.feed_data(batch)
        if hasattr(self.model, 'gt'):
            del self.model.gt
        self.model.test()
        return tensor2img(self.model.output[..., :height, :width], rgb2bgr=False)
