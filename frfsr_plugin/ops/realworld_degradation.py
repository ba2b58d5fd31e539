"""Real-ESRGAN's second-order degradation of an HR batch, as batched torch work on the batch's device.

The structure is ``RealESRGANModel.feed_data``'s (BasicSR 1.4.2) and every operation is BasicSR's own: ``filter2D``
for the blurs and the sinc filter (through :func:`filter2d`, the one fix BasicSR 1.4.2 needs on current torch),
``random_add_gaussian_noise_pt`` / ``random_add_poisson_noise_pt`` and ``DiffJPEG``. Randomness comes from Python's,
numpy's and torch's global generators (as in Real-ESRGAN), which BasicSR's ``manual_seed`` seeds, so a fixed seed
gives identical LR images.
"""
import random

import numpy as np
import torch
import torch.nn.functional as F
from basicsr.data.degradations import random_add_gaussian_noise_pt, random_add_poisson_noise_pt
from basicsr.utils import DiffJPEG
from basicsr.utils.img_process_util import filter2D

RESIZE_MODES = ('area', 'bilinear', 'bicubic')


def quantize_8bit(img):
    """Clamp to [0, 1] and round to the nearest of 256 levels, as an 8-bit image file would store it."""
    return torch.clamp((img * 255.).round(), 0, 255) / 255.


def upsample_like_pil(lq, scale):
    """Bicubic up-sampling that reproduces PIL's ``resize(BICUBIC)`` of an 8-bit image, on any device.

    PIL resamples horizontally, then vertically, with the a = -0.5 cubic (torch's antialiased bicubic) and stores
    each pass as 8-bit. Doing the same gives PIL's result to within one 8-bit level (tested), so the LR-up image of
    a degraded training batch matches the PIL-bicubic one the test datasets make from an LR file.

    Args:
        lq (Tensor): 8-bit-valued LR batch in [0, 1], shape (B, C, h, w).
        scale (int): Up-sampling factor.

    Returns:
        Tensor: (B, C, scale * h, scale * w), 8-bit-valued in [0, 1].
    """
    height, width = lq.shape[-2:]
    wide = quantize_8bit(F.interpolate(lq, size=(height, width * scale), mode='bicubic', antialias=True))
    return quantize_8bit(F.interpolate(wide, size=(height * scale, width * scale), mode='bicubic', antialias=True))


def filter2d(img, kernel):
    """BasicSR's ``filter2D`` on a contiguous input.

    ``filter2D`` reflect-pads and then calls ``.view``; on current torch ``F.pad`` keeps a channels-last layout (which
    DiffJPEG's output has, from its final permute), and the view fails. Real-ESRGAN ran on torch 1.x, whose pad
    returned a contiguous tensor.

    Args:
        img (Tensor): (B, C, H, W).
        kernel (Tensor): (B, k, k) per-sample or (1, k, k) shared kernels, k odd and below 2 * min(H, W).

    Returns:
        Tensor: (B, C, H, W), reflect-padded convolution of ``img`` with the kernels.
    """
    return filter2D(img.contiguous(), kernel)


def _coin(probability):
    """True with the given probability (one draw from numpy's global generator, as Real-ESRGAN)."""
    return np.random.uniform() < probability


def _random_scale(round_options):
    """A resize scale drawn as Real-ESRGAN does: up (in [1, high]), down (in [low, 1]) or keep (1), weighted by
    ``resize_prob``."""
    direction = random.choices(('up', 'down', 'keep'), round_options.resize_prob)[0]
    low, high = round_options.resize_range
    if direction == 'up':
        return np.random.uniform(1, high)
    if direction == 'down':
        return np.random.uniform(low, 1)
    return 1


class RealWorldDegradation:
    """Second-order degradation (Real-ESRGAN) of HR batches into LR batches.

    Round 1 (probability ``first_order_prob``) and round 2 (``second_order_prob``) each apply, with their own
    probabilities: blur with the sample's kernel (``kernel1`` / ``kernel2``), a random resize (round 1 relative to
    its input, round 2 relative to the LR size; area, bilinear or bicubic), Gaussian or Poisson noise (colour or
    grey) and JPEG compression (``DiffJPEG``, per-sample quality). The final step resizes to the LR size and applies
    the sample's sinc kernel (the identity pulse when none was drawn); after round 2 it comes before or after that
    round's JPEG with equal probability, as in Real-ESRGAN. The LR is quantised to 8 bits. Per-batch draws (resize
    scale and mode, noise type, which stages run) are shared by the batch, per-sample ones (kernels, noise level,
    grey noise, JPEG quality) are not, as in Real-ESRGAN.

    Args:
        options (RealWorldDegradationOptions): The pipeline (``frfsr_plugin/data/realworld_degradation.py``).
        scale (int): SR factor; the HR size must be a multiple of it.
        device (torch.device | str): Where DiffJPEG's tables live (the batches' device).
    """

    def __init__(self, options, scale, device):
        self.options = options
        self.scale = scale
        self.jpeger = DiffJPEG(differentiable=False).to(device)

    @torch.no_grad()
    def __call__(self, hr, kernel1, kernel2, sinc_kernel):
        """Degrade an HR batch.

        Args:
            hr (Tensor): Clean HR batch, (B, 3, H, W) in [0, 1], H and W multiples of ``scale``; not modified.
            kernel1 (Tensor): Round-1 blur kernels, (B, k1, k1).
            kernel2 (Tensor): Round-2 blur kernels, (B, k2, k2).
            sinc_kernel (Tensor): Final sinc kernels, (B, 21, 21).

        Returns:
            Tensor: LR batch, (B, 3, H / scale, W / scale), 8-bit-valued in [0, 1].
        """
        first, second = self.options.rounds
        lr_size = (hr.shape[-2] // self.scale, hr.shape[-1] // self.scale)
        out = hr
        if _coin(self.options.first_order_prob):
            out = self._blur_resize_noise(out, kernel1, first, out.shape[-2:])
            out = self._jpeg(out, first)
        if not _coin(self.options.second_order_prob):
            return quantize_8bit(self._resize_and_sinc(out, lr_size, sinc_kernel))
        out = self._blur_resize_noise(out, kernel2, second, lr_size)
        if _coin(0.5):
            out = self._jpeg(self._resize_and_sinc(out, lr_size, sinc_kernel), second)
        else:
            out = self._resize_and_sinc(self._jpeg(out, second), lr_size, sinc_kernel)
        return quantize_8bit(out)

    def _blur_resize_noise(self, img, kernel, round_options, base_size):
        """Blur, random resize (scale relative to ``base_size``) and noise of one round."""
        if _coin(round_options.blur_prob):
            img = filter2d(img, kernel)
        scale = _random_scale(round_options)
        img = self._resize(img, (int(base_size[0] * scale), int(base_size[1] * scale)))
        if _coin(round_options.noise_prob):
            if _coin(round_options.gaussian_noise_prob):
                img = random_add_gaussian_noise_pt(
                    img,
                    sigma_range=round_options.noise_range,
                    clip=True,
                    rounds=False,
                    gray_prob=round_options.gray_noise_prob)
            else:
                img = random_add_poisson_noise_pt(
                    img,
                    scale_range=round_options.poisson_scale_range,
                    gray_prob=round_options.gray_noise_prob,
                    clip=True,
                    rounds=False)
        return img

    def _jpeg(self, img, round_options):
        """DiffJPEG compression with a per-sample quality from ``jpeg_range`` (input clamped to [0, 1] first)."""
        if not _coin(round_options.jpeg_prob):
            return img
        quality = img.new_zeros(img.size(0)).uniform_(*round_options.jpeg_range)
        return self.jpeger(torch.clamp(img, 0, 1), quality=quality)

    def _resize_and_sinc(self, img, lr_size, sinc_kernel):
        """Resize to the LR size and apply the final sinc kernels."""
        return filter2d(self._resize(img, lr_size), sinc_kernel)

    @staticmethod
    def _resize(img, size):
        """Resize to ``size`` (h, w) with a random mode among area, bilinear, bicubic; no-op at the same size."""
        if tuple(img.shape[-2:]) == tuple(size):
            return img
        return F.interpolate(img, size=size, mode=random.choice(RESIZE_MODES))
