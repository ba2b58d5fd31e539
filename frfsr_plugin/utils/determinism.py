"""The ``deterministic`` option: reproducible runs, also on GPUs.

On CPU, BasicSR's seeding (``manual_seed``, offset by the rank) already makes runs repeat bit for bit. On GPUs, cuDNN's
autotuner (which BasicSR switches on) and non-deterministic kernels make losses drift between runs with the same seed.
``deterministic: true`` at the top level of a YAML turns both off.
"""
import os

import torch
from basicsr.utils import get_root_logger


def configure_determinism(opt):
    """Apply ``opt['deterministic']`` (default False).

    When true: ``torch.use_deterministic_algorithms(True, warn_only=True)`` (ops that have no deterministic CUDA kernel,
    such as the backward of bilinear upsampling and ``grid_sample``, warn instead of stopping the run),
    ``cudnn.benchmark = False``, ``cudnn.deterministic = True`` and ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` unless set.

    Args:
        opt (dict): Parsed options.
    """
    if not opt.get('deterministic', False):
        return
    os.environ.setdefault('CUBLAS_WORKSPACE_CONFIG', ':4096:8')
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    get_root_logger().info('Deterministic mode: deterministic algorithms on, cuDNN autotuner off.')
