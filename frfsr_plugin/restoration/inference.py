"""Super-resolve users' own LR images with their own references, at any size (Python API of ``frfsr infer``)."""
import logging

import numpy as np
import torch
from basicsr.archs import build_network
from basicsr.utils import get_root_logger, img2tensor, tensor2img

from frfsr_plugin.archs.frfsr_arch import MIN_LR_SIZE
from frfsr_plugin.data.transforms import SUPPORTED_SCALE, mod_crop, pad_to_common_canvas, pil_bicubic_resize
from frfsr_plugin.restoration import memory
from frfsr_plugin.restoration.pipeline import ReferencePipeline
from frfsr_plugin.restoration.tiling import parse_tile_options
from frfsr_plugin.utils.checkpoint import load_state_dict_checked, read_state_dict
from frfsr_plugin.utils.errors import InputSizeError, OptionError
from frfsr_plugin.utils.options import load_plugins
from frfsr_plugin.utils.speed import parse_speed_options, speed_up_network


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

    The generator and the frozen networks (encoder, correspondence, SIFE and, for a two-stage YAML, that is one with
    ``network_stage1``, Net1) are built from a training or test options YAML (for instance the copy that ``basicsr
    train`` leaves in ``experiments/<name>/``) in the order and with the loading checks of ``basicsr test``, and run
    through the same :class:`~frfsr_plugin.restoration.pipeline.ReferencePipeline`; ``weights`` is a generator
    checkpoint written by ``basicsr train``.

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

    Attributes:
        generator (nn.Module): ``network_g`` with the weights, in eval mode.
        pipeline (ReferencePipeline): The frozen networks.
        tile_size (int | None), tile_overlap (int), max_corr_elements (int): The configured tiles and matching chunk.
        max_memory (float | None): The budget in bytes.
        baseline_memory (int): Memory in use once the networks are built (bytes).
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
        weights_state = read_state_dict(
            weights, 'params_ema', f"weights file '{weights}' not found (a net_g_*.pth written by basicsr train).")
        tile_opt = dict((opt.get('val') or {}).get('tile') or {})
        tile_opt.update({key: value for key, value in (('size', tile), ('overlap', tile_overlap)) if value is not None})
        self.tile_size, self.tile_overlap = parse_tile_options(tile_opt, '--tile/--tile-overlap (val.tile)')
        if max_memory_mb is not None and max_memory_mb <= 0:
            raise OptionError(f'--max-memory-mb must be positive, got {max_memory_mb}.')
        self.max_memory = None if max_memory_mb is None else max_memory_mb * 2**20
        self.device = torch.device(device)
        generator = build_network(opt['network_g']).to(self.device)  # first, as in basicsr test (random inits)
        load_state_dict_checked(generator, weights_state, f"'{weights}'")
        self.generator = speed_up_network(generator.eval(), parse_speed_options(opt))
        self.pipeline = ReferencePipeline.from_options(opt, self.device, 'network_stage1' in opt, 'frfsr infer')
        self.pipeline.check_generator(self.generator)
        if max_corr_elements is None:
            max_corr_elements = self.pipeline.correspondence.max_corr_elements
        self.max_corr_elements = int(max_corr_elements)
        # measured while the checkpoint as read is still held (on CPU): it leaves the image a reserve of its size for
        # the fixed overheads that the per-pixel estimates do not count
        self.baseline_memory = memory.resident_bytes(self.device)

    def prepare(self, lr, ref):
        """Pad LR (h, w) and Ref to a common HR canvas; returns the batch and the output size (4h, 4w)."""
        height, width = lr.shape[:2]
        if min(height, width) < MIN_LR_SIZE:
            raise InputSizeError(f'the LR image is {width}x{height}; FRFSR needs at least {MIN_LR_SIZE}x{MIN_LR_SIZE}.')
        images = pad_to_common_canvas(lr, mod_crop(ref, SUPPORTED_SCALE), SUPPORTED_SCALE)
        batch = {key: to_batch(image, self.device) for key, image in zip(('lq', 'lq_up', 'ref'), images)}
        return batch, (SUPPORTED_SCALE * height, SUPPORTED_SCALE * width)

    def plan(self, lr_size, ref_size, ref_name='the reference'):
        """Tile size and matching chunk of one image: the configured ones, or under the memory budget the ones of
        :func:`~frfsr_plugin.restoration.memory.plan_restoration`.

        Args:
            lr_size (tuple[int, int]): (h, w) of the padded LR canvas.
            ref_size (tuple[int, int]): (H, W) of the reference as given, for the error message.
            ref_name (str): The reference's file name, for the error message.

        Returns:
            tuple[int | None, int]: The tile size in LR pixels (None: the whole canvas) and the matcher's
            ``max_corr_elements``.
        """
        if self.max_memory is None:
            return self.tile_size, self.max_corr_elements
        networks = self.pipeline.restoration_networks(self.generator)
        budget = memory.MemoryBudget(self.max_memory, self.baseline_memory)
        return memory.plan_restoration(lr_size, networks, self.pipeline.sife_channels, budget, self.max_corr_elements,
                                       self.tile_size, self.tile_overlap, (ref_name, ref_size))

    @torch.no_grad()
    def restore(self, batch, tile_size, max_corr_elements):
        """The restoration of a batch on its padded canvas.

        Args:
            batch (dict): ``lq`` (B, 3, h, w), ``lq_up`` and ``ref`` (B, 3, 4h, 4w), e.g. from :meth:`prepare`.
            tile_size (int | None): Tile size in LR pixels, None for the whole canvas.
            max_corr_elements (int): Matching chunk budget.

        Returns:
            Restoration: ``sr`` and, for two-stage models, ``sr_stage1``, (B, 3, 4h, 4w).
        """
        lq, lq_up, ref = (batch[key].to(self.device) for key in ('lq', 'lq_up', 'ref'))
        return self.pipeline.super_resolve(self.generator, lq, lq_up, ref, tile_size, self.tile_overlap,
                                           max_corr_elements)

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
        restoration = self.restore(batch, *self.plan(batch['lq'].shape[-2:], ref.shape[:2], ref_name))
        return tensor2img(restoration.sr[..., :height, :width], rgb2bgr=False)
