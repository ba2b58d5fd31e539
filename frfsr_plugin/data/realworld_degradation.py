"""Options of the real-world (Real-ESRGAN) degradation and the per-sample blur kernels the training datasets draw.

A training dataset with a ``realworld_degradation: {...}`` block adds three kernels to every sample, drawn exactly as
BasicSR's ``RealESRGANDataset`` draws them (with BasicSR's ``random_mixed_kernels`` and ``circular_lowpass_kernel``,
from Python's and numpy's global random state, which BasicSR seeds per worker). The model then degrades the HR batch
on its device (``frfsr_plugin/ops/realworld_degradation.py``). The block takes Real-ESRGAN's option names; keys left
out get Real-ESRGAN's x4 values (``DEFAULTS``), and keys Real-ESRGAN lacks switch single stages or whole rounds.
"""
import difflib
import math
import random
from dataclasses import dataclass

import numpy as np
import torch
from basicsr.data.degradations import circular_lowpass_kernel, random_mixed_kernels

from frfsr_plugin.utils.errors import InputSizeError, OptionError

BLOCK_KEY = 'realworld_degradation'
KERNEL_BATCH_KEYS = ('kernel1', 'kernel2', 'sinc_kernel')  # sample / batch keys of the drawn kernels
KERNEL_TYPES = ('iso', 'aniso', 'generalized_iso', 'generalized_aniso', 'plateau_iso', 'plateau_aniso')
MIN_KERNEL_SIZE = 7  # Real-ESRGAN draws odd kernel sizes 7..21
FINAL_SINC_SIZE = 21  # the final sinc kernel (or the identity pulse) is always 21 x 21, as in Real-ESRGAN

# Real-ESRGAN's x4 recipe (options/train_realesrnet_x4plus.yml), plus our stage switches (all on).
# yapf: disable
DEFAULTS = {
    # whole rounds (second_order_prob as in ResShift's Real-ESRGAN configs; first_order_prob is ours)
    'first_order_prob': 1.0, 'second_order_prob': 1.0,
    # the first degradation round
    'blur_prob': 1.0,
    'resize_prob': [0.2, 0.7, 0.1], 'resize_range': [0.15, 1.5],
    'noise_prob': 1.0, 'gaussian_noise_prob': 0.5, 'noise_range': [1, 30], 'poisson_scale_range': [0.05, 3],
    'gray_noise_prob': 0.4,
    'jpeg_prob': 1.0, 'jpeg_range': [30, 95],
    # the second degradation round
    'second_blur_prob': 0.8,
    'resize_prob2': [0.3, 0.4, 0.3], 'resize_range2': [0.3, 1.2],
    'noise_prob2': 1.0, 'gaussian_noise_prob2': 0.5, 'noise_range2': [1, 25], 'poisson_scale_range2': [0.05, 2.5],
    'gray_noise_prob2': 0.4,
    'jpeg_prob2': 1.0, 'jpeg_range2': [30, 95],
    # the kernels of the two blurs and the final sinc filter (drawn by the dataset)
    'blur_kernel_size': 21, 'kernel_list': list(KERNEL_TYPES), 'kernel_prob': [0.45, 0.25, 0.12, 0.03, 0.12, 0.03],
    'sinc_prob': 0.1, 'blur_sigma': [0.2, 3], 'betag_range': [0.5, 4], 'betap_range': [1, 2],
    'blur_kernel_size2': 21, 'kernel_list2': list(KERNEL_TYPES), 'kernel_prob2': [0.45, 0.25, 0.12, 0.03, 0.12, 0.03],
    'sinc_prob2': 0.1, 'blur_sigma2': [0.2, 1.5], 'betag_range2': [0.5, 4], 'betap_range2': [1, 2],
    'final_sinc_prob': 0.8,
}
# yapf: enable

# RoundOptions field -> (first-round key, second-round key).
ROUND_KEYS = {
    'blur_prob': ('blur_prob', 'second_blur_prob'),
    'resize_prob': ('resize_prob', 'resize_prob2'),
    'resize_range': ('resize_range', 'resize_range2'),
    'noise_prob': ('noise_prob', 'noise_prob2'),
    'gaussian_noise_prob': ('gaussian_noise_prob', 'gaussian_noise_prob2'),
    'noise_range': ('noise_range', 'noise_range2'),
    'poisson_scale_range': ('poisson_scale_range', 'poisson_scale_range2'),
    'gray_noise_prob': ('gray_noise_prob', 'gray_noise_prob2'),
    'jpeg_prob': ('jpeg_prob', 'jpeg_prob2'),
    'jpeg_range': ('jpeg_range', 'jpeg_range2'),
}
KERNEL_FIELDS = ('blur_kernel_size', 'kernel_list', 'kernel_prob', 'sinc_prob', 'blur_sigma', 'betag_range',
                 'betap_range')


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_pair(value, valid):
    return isinstance(value, (list, tuple)) and len(value) == 2 and all(map(_is_number, value)) and valid(*value)


def _is_weights(value, length=None):
    return (isinstance(value, (list, tuple)) and len(value) > 0 and (length is None or len(value) == length)
            and all(_is_number(v) and v >= 0 for v in value) and sum(value) > 0)


def _is_kernel_size(value):
    return isinstance(value, int) and not isinstance(value, bool) and value in range(
        MIN_KERNEL_SIZE, FINAL_SINC_SIZE + 1, 2)


# Value checks: (predicate, what the value must be).
CHECKS = {
    'probability': (lambda v: _is_number(v) and 0 <= v <= 1, 'a probability in [0, 1]'),
    'resize_prob': (lambda v: _is_weights(v, 3), 'three non-negative weights [up, down, keep], not all zero'),
    'resize_range': (lambda v: _is_pair(v, lambda lo, hi: 0 < lo <= 1 <= hi), '[low, high] with 0 < low <= 1 <= high'),
    'noise_range': (lambda v: _is_pair(v, lambda lo, hi: 0 <= lo <= hi), '[low, high] with 0 <= low <= high'),
    'jpeg_range': (lambda v: _is_pair(v, lambda lo, hi: 1 <= lo <= hi <= 100),
                   '[low, high] JPEG qualities with 1 <= low <= high <= 100'),
    'kernel_size': (_is_kernel_size, f'an odd integer in [{MIN_KERNEL_SIZE}, {FINAL_SINC_SIZE}]'),
    'kernel_list': (lambda v: isinstance(v, (list, tuple)) and len(v) > 0 and all(k in KERNEL_TYPES for k in v),
                    f'a non-empty list of kernel types from {list(KERNEL_TYPES)}'),
    'weights': (_is_weights, 'a list of non-negative weights, not all zero'),
    'sigma_range': (lambda v: _is_pair(v, lambda lo, hi: 0 < lo < hi), '[low, high] with 0 < low < high'),
    'beta_range': (lambda v: _is_pair(v, lambda lo, hi: 0 < lo <= hi), '[low, high] with 0 < low <= high'),
}
FIELD_CHECKS = {
    'blur_prob': 'probability', 'resize_prob': 'resize_prob', 'resize_range': 'resize_range',
    'noise_prob': 'probability', 'gaussian_noise_prob': 'probability', 'noise_range': 'noise_range',
    'poisson_scale_range': 'noise_range', 'gray_noise_prob': 'probability', 'jpeg_prob': 'probability',
    'jpeg_range': 'jpeg_range', 'blur_kernel_size': 'kernel_size', 'kernel_list': 'kernel_list',
    'kernel_prob': 'weights', 'sinc_prob': 'probability', 'blur_sigma': 'sigma_range', 'betag_range': 'beta_range',
    'betap_range': 'beta_range', 'first_order_prob': 'probability', 'second_order_prob': 'probability',
    'final_sinc_prob': 'probability'
}  # yapf: disable


def _field_of(key):
    """The option field a YAML key sets (``resize_range2`` -> ``resize_range``, ``second_blur_prob`` -> ...)."""
    for field, keys in ROUND_KEYS.items():
        if key in keys:
            return field
    return key[:-1] if key.endswith('2') else key


@dataclass(frozen=True)
class RoundOptions:
    """One blur / resize / noise / JPEG round of the pipeline (Real-ESRGAN's model options of that round).

    ``*_prob`` fields are the probabilities of applying a stage (per batch); ``resize_prob`` weighs [up, down, keep];
    ranges are [low, high] pairs: ``resize_range`` of the scale, ``noise_range`` of the Gaussian sigma (8-bit
    levels), ``poisson_scale_range`` of the Poisson noise scale, ``jpeg_range`` of the JPEG quality.
    """
    blur_prob: float
    resize_prob: tuple
    resize_range: tuple
    noise_prob: float
    gaussian_noise_prob: float
    noise_range: tuple
    poisson_scale_range: tuple
    gray_noise_prob: float
    jpeg_prob: float
    jpeg_range: tuple


@dataclass(frozen=True)
class KernelOptions:
    """The blur kernel of one round (Real-ESRGAN's dataset options): odd sizes 7..``blur_kernel_size``, padded to it;
    a sinc kernel with probability ``sinc_prob``, else one of ``kernel_list`` with weights ``kernel_prob``."""
    blur_kernel_size: int
    kernel_list: tuple
    kernel_prob: tuple
    sinc_prob: float
    blur_sigma: tuple
    betag_range: tuple
    betap_range: tuple


@dataclass(frozen=True)
class RealWorldDegradationOptions:
    """The whole second-order pipeline: round 1 with probability ``first_order_prob``, round 2 with
    ``second_order_prob``, then the resize to the LR size and the final sinc filter (``final_sinc_prob``)."""
    first_order_prob: float
    second_order_prob: float
    final_sinc_prob: float
    rounds: tuple  # (RoundOptions, RoundOptions)
    kernels: tuple  # (KernelOptions, KernelOptions)


def resolved_settings(block):
    """Validate a ``realworld_degradation`` block and fill in Real-ESRGAN's x4 values for the keys left out.

    Args:
        block (dict): The YAML block (Real-ESRGAN's key names).

    Returns:
        dict: Every key of ``DEFAULTS`` with its validated value (lists as tuples).

    Raises:
        OptionError: An unknown key or a bad value; the message names the key.
    """
    if not isinstance(block, dict):
        raise OptionError(f"option '{BLOCK_KEY}' must be a mapping of Real-ESRGAN degradation options or null, "
                          f'got {block!r}')
    for key in block:
        if key not in DEFAULTS:
            close = difflib.get_close_matches(str(key), DEFAULTS, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ''
            raise OptionError(f"unknown option '{BLOCK_KEY}.{key}'{hint}")
    settings = {**DEFAULTS, **block}
    for key, value in settings.items():
        valid, expected = CHECKS[FIELD_CHECKS[_field_of(key)]]
        if not valid(value):
            raise OptionError(f"option '{BLOCK_KEY}.{key}' must be {expected}, got {value!r}")
    for suffix in ('', '2'):
        if len(settings[f'kernel_prob{suffix}']) != len(settings[f'kernel_list{suffix}']):
            raise OptionError(f"option '{BLOCK_KEY}.kernel_prob{suffix}' needs one weight per entry of "
                              f"'kernel_list{suffix}' ({len(settings[f'kernel_list{suffix}'])})")
    return {key: tuple(value) if isinstance(value, list) else value for key, value in settings.items()}


def parse_realworld_options(block):
    """The pipeline options of a dataset's ``realworld_degradation`` value.

    Args:
        block (dict | None | bool): The YAML value: a mapping turns the degradation on (an empty one gives
            Real-ESRGAN's x4 recipe); null or false leave it off.

    Returns:
        RealWorldDegradationOptions | None: None when off.
    """
    if block is None or block is False:
        return None
    settings = resolved_settings(block)
    rounds = tuple(
        RoundOptions(**dict((field, settings[keys[index]]) for field, keys in ROUND_KEYS.items())) for index in (0, 1))
    kernels = tuple(
        KernelOptions(**dict((field, settings[field + suffix]) for field in KERNEL_FIELDS)) for suffix in ('', '2'))
    return RealWorldDegradationOptions(settings['first_order_prob'], settings['second_order_prob'],
                                       settings['final_sinc_prob'], rounds, kernels)


def train_degradation_block(opt):
    """The ``realworld_degradation`` block of the training dataset in full BasicSR options, or None.

    Args:
        opt (dict): BasicSR options; training datasets are those whose ``datasets`` key starts with ``train``.
    """
    for phase, dataset_opt in (opt.get('datasets') or {}).items():
        block = (dataset_opt or {}).get(BLOCK_KEY)
        if phase.split('_')[0] == 'train' and block is not None and block is not False:
            return block
    return None


def min_hr_side(options, scale):
    """Smallest HR side (a multiple of ``scale``) the pipeline can degrade.

    BasicSR's ``filter2D`` reflect-pads by half the kernel, which needs a larger image side: the first blur runs at
    the HR size, the second after the first round's resize (down to ``resize_range[0]`` of it) and the final sinc
    filter at the LR size.
    """
    first_blur = options.kernels[0].blur_kernel_size // 2 + 1
    second_blur = math.ceil((options.kernels[1].blur_kernel_size // 2 + 1) / options.rounds[0].resize_range[0])
    final_sinc = scale * (FINAL_SINC_SIZE // 2 + 1)
    return math.ceil(max(first_blur, second_blur, final_sinc) / scale) * scale


def check_degradable_size(options, height, width, scale, what):
    """Raise :class:`InputSizeError` naming ``what`` unless an HR image of this size can be degraded.

    Args:
        options (RealWorldDegradationOptions): The pipeline.
        height, width (int): HR size.
        scale (int): SR factor.
        what (str): Where the size comes from, for the message (e.g. ``"option 'gt_size'"`` or a file).
    """
    needed = min_hr_side(options, scale)
    if height % scale or width % scale or min(height, width) < needed:
        raise InputSizeError(f'{what}: HR size {height}x{width} cannot be degraded by {BLOCK_KEY}: both sides must be '
                             f'multiples of {scale} and at least {needed} (blur kernel sizes and resize_range[0])')


def draw_blur_kernel(kernel_options):
    """One round's blur kernel, drawn as ``RealESRGANDataset`` does (global ``random`` and ``numpy.random``).

    Args:
        kernel_options (KernelOptions): The round's kernel options.

    Returns:
        ndarray: (blur_kernel_size, blur_kernel_size) float64 kernel summing to 1, zero-padded around a kernel of
        random odd size in [7, blur_kernel_size].
    """
    max_size = kernel_options.blur_kernel_size
    kernel_size = random.choice(range(MIN_KERNEL_SIZE, max_size + 1, 2))
    if np.random.uniform() < kernel_options.sinc_prob:
        omega_c = np.random.uniform(np.pi / 3 if kernel_size < 13 else np.pi / 5, np.pi)
        kernel = circular_lowpass_kernel(omega_c, kernel_size, pad_to=False)
    else:
        kernel = random_mixed_kernels(
            kernel_options.kernel_list,
            kernel_options.kernel_prob,
            kernel_size,
            kernel_options.blur_sigma,
            kernel_options.blur_sigma, [-math.pi, math.pi],
            kernel_options.betag_range,
            kernel_options.betap_range,
            noise_range=None)
    return np.pad(kernel, (max_size - kernel_size) // 2)


def draw_final_sinc_kernel(final_sinc_prob):
    """The final sinc kernel (with probability ``final_sinc_prob``) or the identity pulse, as ``RealESRGANDataset``.

    Returns:
        ndarray: (21, 21) float64 kernel.
    """
    if np.random.uniform() < final_sinc_prob:
        kernel_size = random.choice(range(MIN_KERNEL_SIZE, FINAL_SINC_SIZE + 1, 2))
        omega_c = np.random.uniform(np.pi / 3, np.pi)
        return circular_lowpass_kernel(omega_c, kernel_size, pad_to=FINAL_SINC_SIZE)
    pulse = np.zeros((FINAL_SINC_SIZE, FINAL_SINC_SIZE))
    pulse[FINAL_SINC_SIZE // 2, FINAL_SINC_SIZE // 2] = 1
    return pulse


def draw_degradation_kernels(options):
    """The three kernels of one training sample.

    Args:
        options (RealWorldDegradationOptions): The pipeline.

    Returns:
        dict: ``kernel1`` and ``kernel2`` (blur_kernel_size(2) square) and ``sinc_kernel`` (21, 21), float32 tensors.
    """
    kernels = [draw_blur_kernel(options.kernels[0]), draw_blur_kernel(options.kernels[1])]
    kernels.append(draw_final_sinc_kernel(options.final_sinc_prob))
    return {key: torch.from_numpy(kernel.astype(np.float32)) for key, kernel in zip(KERNEL_BATCH_KEYS, kernels)}
