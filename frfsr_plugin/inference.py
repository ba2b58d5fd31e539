"""Super-resolve users' own LR images with their own references, at any size (Python API of ``frfsr infer``)."""
import copy
import logging

import numpy as np
import torch
from basicsr.models import build_model
from basicsr.utils import get_root_logger, img2tensor, tensor2img

from frfsr_plugin.cli.basicsr_cli import load_plugins
from frfsr_plugin.data.transforms import mod_crop, pad_to, pil_bicubic_resize
from frfsr_plugin.utils.errors import InputSizeError, MissingFileError, OptionError

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

    Args:
        opt_path (str): Options YAML that defines ``model_type`` and the ``network_*`` entries.
        weights (str): Generator checkpoint (``params_ema`` is used when present, else ``params``).
        device (str): ``'cpu'`` or ``'cuda'``. Default: ``'cpu'``.
        max_corr_elements (int | None): Memory budget of one matching chunk; None keeps the YAML's. Default: None.
    """

    def __init__(self, opt_path, weights, device='cpu', max_corr_elements=None):
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
        self.model = build_model(opt)

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

    @torch.no_grad()
    def __call__(self, lr, ref):
        """
        Args:
            lr (ndarray): LR image, (h, w, 3) RGB uint8, h and w >= 15.
            ref (ndarray | list[ndarray]): Reference, (H_r, W_r, 3) RGB uint8, any size; several references are
                stitched side by side (:func:`stitch_references`).

        Returns:
            ndarray: SR image, (4h, 4w, 3) RGB uint8.
        """
        if isinstance(ref, (list, tuple)):
            ref = stitch_references(ref)
        batch, (height, width) = self.prepare(lr, ref)
        self.model.feed_data(batch)
        if hasattr(self.model, 'gt'):
            del self.model.gt
        self.model.test()
        return tensor2img(self.model.output[..., :height, :width], rgb2bgr=False)
