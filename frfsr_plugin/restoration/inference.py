"""Super-resolve users' own LR images with their own references, at any size (Python API of ``frfsr infer``)."""
import logging
from typing import NamedTuple

import numpy as np
import torch
from basicsr.archs import build_network
from basicsr.utils import get_root_logger, img2tensor, tensor2img

from frfsr_plugin.archs.frfsr_arch import MIN_LR_SIZE
from frfsr_plugin.data.transforms import SUPPORTED_SCALE, mod_crop, pad_to_common_canvas, pil_bicubic_resize
from frfsr_plugin.ops.patch_match import PATCH_SIZE
from frfsr_plugin.restoration import memory
from frfsr_plugin.restoration.pipeline import ReferencePipeline
from frfsr_plugin.restoration.tiling import parse_tile_options
from frfsr_plugin.utils.checkpoint import load_state_dict_checked, read_state_dict
from frfsr_plugin.utils.cpu_allocator import return_freed_cpu_memory
from frfsr_plugin.utils.errors import InputSizeError, OptionError
from frfsr_plugin.utils.options import load_plugins
from frfsr_plugin.utils.speed import parse_speed_options, speed_up_network

CANVASES = ('decoupled', 'padded')
MIN_REF_SIZE = SUPPORTED_SCALE * PATCH_SIZE  # HR pixels: one 3x3 patch of encoder features


def stitch_references(refs):
    """Several references side by side, each PIL-bicubic resized to the tallest one's height (aspect kept): the
    reference of the padded canvas (``canvas='padded'``), and the Ref panel of comparisons.

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


class PreparedInputs(NamedTuple):
    """One LR image and its references, ready to restore.

    Attributes:
        batch (dict): ``lq`` (1, 3, h, w), ``lq_up`` (1, 3, 4h, 4w) and ``ref``: one tensor (1, 3, 4h, 4w) on the
            padded canvas, or a list of tensors (1, 3, H_i, W_i), one per reference (decoupled canvas).
        output_size (tuple[int, int]): (4h, 4w) of the LR as given, to crop the SR to.
        tile_size (int | None): Tile size in LR pixels (None: the whole image).
        max_corr_elements (int): The matcher's chunk budget.
    """

    batch: dict
    output_size: tuple
    tile_size: object
    max_corr_elements: int


class RefSRInferencer:
    """Runs a trained RefSR model (stage 1 or two-stage) on one LR image and one or several references of any sizes.

    The generator and the frozen networks (encoder, correspondence, SIFE and, for a two-stage YAML, that is one with
    ``network_stage1``, Net1) are built from a training or test options YAML (for instance the copy that ``basicsr
    train`` leaves in ``experiments/<name>/``) in the order and with the loading checks of ``basicsr test``, and run
    through the same :class:`~frfsr_plugin.restoration.pipeline.ReferencePipeline`; ``weights`` is a generator
    checkpoint written by ``basicsr train``.

    Canvas. ``'decoupled'`` (default): the restoration networks run on the LR's own size; each reference, mod-cropped
    to a multiple of 4, keeps its own size and is matched on its own grid, and several references form one reference
    set (``ops/reference_set.py``): every LR patch takes its best match over all patches of all of them.
    ``'padded'``: the papers' protocol, as the test datasets do it: the Ref (several are first stitched side by side at
    a common height, :func:`stitch_references`) and the LR are zero-padded on the bottom/right to a common HR canvas,
    and the SR is cropped back to 4x the LR. With a reference of exactly 4x the LR's size both give the same SR.

    Memory: the restoration networks may run on overlapping LR tiles (``tile``, or ``val.tile`` in the YAML) with the
    correspondence computed once for the whole image (``restoration/tiling.py``). With ``max_memory_mb`` the
    peak memory of each image is estimated (``restoration/memory.py``): without an explicit tile size, the largest
    tile that fits is chosen (no tiling when the whole image fits), the matching chunk is shrunk to fit, and an image
    whose correspondence alone does not fit raises :class:`InputSizeError`. On CPU a budget makes the process hand
    freed memory back to the kernel at once (``utils/cpu_allocator.py::return_freed_cpu_memory``, process-wide, set
    before the networks are built), the allocator setting the estimates were measured under.

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
        canvas (str): ``'decoupled'`` or ``'padded'`` (see above). Default: ``'decoupled'``.

    Attributes:
        generator (nn.Module): ``network_g`` with the weights, in eval mode.
        pipeline (ReferencePipeline): The frozen networks.
        tile_size (int | None), tile_overlap (int), max_corr_elements (int): The configured tiles and matching chunk.
        max_memory (float | None): The budget in bytes.
        baseline_memory (int): Memory in use once the networks are built (bytes).
        canvas (str): The canvas.
    """

    def __init__(self,
                 opt_path,
                 weights,
                 device='cpu',
                 max_corr_elements=None,
                 tile=None,
                 tile_overlap=None,
                 max_memory_mb=None,
                 canvas='decoupled'):
        get_root_logger(log_level=logging.WARNING)  # BasicSR logs every network it builds at INFO
        if canvas not in CANVASES:
            raise OptionError(f'--ref-canvas must be one of {CANVASES}, got {canvas!r}.')
        self.canvas = canvas
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
        if self.max_memory is not None and self.device.type == 'cpu':
            return_freed_cpu_memory()  # resident memory follows the live tensors, as the estimates assume
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

    @staticmethod
    def check_lr(lr):
        """Stop with one line when the LR (h, w, 3) is smaller than FRFSR's minimum; returns (4h, 4w)."""
        height, width = lr.shape[:2]
        if min(height, width) < MIN_LR_SIZE:
            raise InputSizeError(f'the LR image is {width}x{height}; FRFSR needs at least {MIN_LR_SIZE}x{MIN_LR_SIZE}.')
        return SUPPORTED_SCALE * height, SUPPORTED_SCALE * width

    def prepare(self, lr, ref):
        """Pad LR (h, w) and Ref to a common HR canvas; returns the batch and the output size (4h, 4w)."""
        output_size = self.check_lr(lr)
        images = pad_to_common_canvas(lr, mod_crop(ref, SUPPORTED_SCALE), SUPPORTED_SCALE)
        batch = {key: to_batch(image, self.device) for key, image in zip(('lq', 'lq_up', 'ref'), images)}
        return batch, output_size

    def prepare_decoupled(self, lr, refs, ref_names):
        """The LR at its own size and each reference, mod-cropped to a multiple of 4, at its own.

        Args:
            lr (ndarray): (h, w, 3) RGB uint8.
            refs (list[ndarray]): (H_i, W_i, 3) RGB uint8.
            ref_names (list[str]): The references' names, for the error of one that is too small.

        Returns:
            tuple[dict, tuple[int, int]]: The batch (``ref`` a list) and the output size (4h, 4w).
        """
        output_size = self.check_lr(lr)
        cropped = [mod_crop(ref, SUPPORTED_SCALE) for ref in refs]
        for name, ref, image in zip(ref_names, refs, cropped):
            if min(image.shape[:2]) < MIN_REF_SIZE:
                raise InputSizeError(f"reference '{name}' is {ref.shape[1]}x{ref.shape[0]}; FRFSR needs at least "
                                     f'{MIN_REF_SIZE}x{MIN_REF_SIZE}.')
        batch = {
            'lq': to_batch(lr, self.device),
            'lq_up': to_batch(pil_bicubic_resize(lr, output_size), self.device),
            'ref': [to_batch(image, self.device) for image in cropped]
        }
        return batch, output_size

    def plan(self, lr_size, ref_size, ref_name='the reference', ref_grid_sizes=None):
        """Tile size and matching chunk of one image: the configured ones, or under the memory budget the ones of
        :func:`~frfsr_plugin.restoration.memory.plan_restoration`.

        Args:
            lr_size (tuple[int, int]): (h, w) of the LR canvas (padded on the padded canvas).
            ref_size (tuple[int, int] | list[tuple[int, int]]): (H, W) of the reference as given, or of each one of a
                set, for the error message.
            ref_name (str | list[str]): The reference's file name, or those of a set, for the error message.
            ref_grid_sizes (list[tuple[int, int]] | None): Encoder-grid sizes (mod-cropped size / 4) of the references
                on the decoupled canvas; None on the padded canvas. Default: None.

        Returns:
            tuple[int | None, int]: The tile size in LR pixels (None: the whole canvas) and the matcher's
            ``max_corr_elements``.
        """
        if self.max_memory is None:
            return self.tile_size, self.max_corr_elements
        networks = self.pipeline.restoration_networks(self.generator)
        budget = memory.MemoryBudget(self.max_memory, self.baseline_memory)
        return memory.plan_restoration(lr_size, networks, self.pipeline.sife_channels, budget, self.max_corr_elements,
                                       self.tile_size, self.tile_overlap, (ref_name, ref_size), ref_grid_sizes)

    def prepare_inputs(self, lr, ref, ref_name='the reference'):
        """The batch, output size, tile size and matching chunk of one image on this inferencer's canvas.

        Args:
            lr (ndarray): LR image, (h, w, 3) RGB uint8, h and w >= 15.
            ref (ndarray | list[ndarray]): Reference, (H_r, W_r, 3) RGB uint8, any size, or several references.
            ref_name (str | list[str]): The reference's name, or one per reference, for error messages.

        Returns:
            PreparedInputs
        """
        refs = list(ref) if isinstance(ref, (list, tuple)) else [ref]
        names = list(ref_name) if isinstance(ref_name, (list, tuple)) else [ref_name] * len(refs)
        if self.canvas == 'padded':
            image = refs[0] if len(refs) == 1 else stitch_references(refs)
            batch, output_size = self.prepare(lr, image)
            plan = self.plan(batch['lq'].shape[-2:], image.shape[:2], ', '.join(dict.fromkeys(names)))
        else:
            batch, output_size = self.prepare_decoupled(lr, refs, names)
            grid_sizes = [tuple(side // SUPPORTED_SCALE for side in image.shape[-2:]) for image in batch['ref']]
            sizes = [image.shape[:2] for image in refs]
            plan = self.plan(batch['lq'].shape[-2:], sizes if len(refs) > 1 else sizes[0],
                             names if len(refs) > 1 else names[0], grid_sizes)
        return PreparedInputs(batch, output_size, *plan)

    @torch.no_grad()
    def restore(self, batch, tile_size, max_corr_elements):
        """The restoration of a batch on its canvas.

        Args:
            batch (dict): ``lq`` (B, 3, h, w), ``lq_up`` (B, 3, 4h, 4w) and ``ref``, from :meth:`prepare` (one tensor
                (B, 3, 4h, 4w)) or :meth:`prepare_decoupled` (a list of tensors (B, 3, H_i, W_i)).
            tile_size (int | None): Tile size in LR pixels, None for the whole canvas.
            max_corr_elements (int): Matching chunk budget.

        Returns:
            Restoration: ``sr`` and, for two-stage models, ``sr_stage1``, (B, 3, 4h, 4w), and the matches.
        """
        lq, lq_up = (batch[key].to(self.device) for key in ('lq', 'lq_up'))
        ref = batch['ref']
        ref = ref.to(self.device) if torch.is_tensor(ref) else [image.to(self.device) for image in ref]
        return self.pipeline.super_resolve(self.generator, lq, lq_up, ref, tile_size, self.tile_overlap,
                                           max_corr_elements)

    def super_resolve(self, lr, ref, ref_name='the reference'):
        """The :class:`~frfsr_plugin.restoration.pipeline.Restoration` of one LR image, its SR images cropped to 4x the
        LR (arguments as :meth:`prepare_inputs`). On the padded canvas the matches cover the padded LR."""
        return self.super_resolve_with_inputs(lr, ref, ref_name)[0]

    def super_resolve_with_inputs(self, lr, ref, ref_name='the reference'):
        """:meth:`super_resolve`, and the :class:`PreparedInputs` it restored (the references as the networks saw
        them, for ``restoration/explanation.py``).

        Returns:
            tuple[Restoration, PreparedInputs]
        """
        inputs = self.prepare_inputs(lr, ref, ref_name)
        restoration = self.restore(inputs.batch, inputs.tile_size, inputs.max_corr_elements)
        height, width = inputs.output_size
        crop = {
            name: image[..., :height, :width]
            for name, image in (('sr', restoration.sr), ('sr_stage1', restoration.sr_stage1)) if image is not None
        }
        return restoration._replace(**crop), inputs

    def __call__(self, lr, ref, ref_name='the reference'):
        """
        Args:
            lr (ndarray): LR image, (h, w, 3) RGB uint8, h and w >= 15.
            ref (ndarray | list[ndarray]): Reference, (H_r, W_r, 3) RGB uint8, any size; or a list of references, one
                reference set (decoupled canvas) or stitched side by side (padded canvas).
            ref_name (str | list[str]): The reference's file name (or one per reference), for error messages.
                Default: ``'the reference'``.

        Returns:
            ndarray: SR image, (4h, 4w, 3) RGB uint8.
        """
        return tensor2img(self.super_resolve(lr, ref, ref_name).sr, rgb2bgr=False)
