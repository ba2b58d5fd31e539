"""Keeping precision-sensitive ops in float32 under mixed precision.

Under ``torch.autocast(dtype=torch.bfloat16)`` plain convolutions run in bf16, but patch matching (an arg-max over
near-equal cosine scores), deformable convolution (bilinear sampling positions) and the decoupled dynamic filter
(products of predicted filters) lose too much in bf16. Functions decorated with :func:`float32_op` run with autocast
disabled and their floating-point tensor arguments cast to float32.
"""
import functools

import torch


def float32_op(fn):
    """Decorator: run ``fn`` in float32 when autocast is active on its tensors' device; unchanged otherwise.

    Args:
        fn (callable): Function whose positional arguments include tensors (the first one gives the device).

    Returns:
        callable: The wrapped function; it returns what ``fn`` returns (float32 tensors under autocast).
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        device_type = next(arg for arg in args if isinstance(arg, torch.Tensor)).device.type
        if not torch.is_autocast_enabled(device_type):
            return fn(*args, **kwargs)
        args = [arg.float() if isinstance(arg, torch.Tensor) and arg.is_floating_point() else arg for arg in args]
        with torch.autocast(device_type, enabled=False):
            return fn(*args, **kwargs)

    return wrapper
