"""Optional speed-ups of the restoration networks that keep results: ``channels_last``, bf16 autocast, torch.compile.

They are set in a top-level ``speed:`` section of a YAML (training, test, or the one ``frfsr infer`` reads)::

    speed:
      channels_last: true   # NHWC memory layout for the trained generator(s)
      bf16: true            # bf16 autocast for plain convolutions; matching, DCN and DDF stay float32
      compile: true         # torch.compile the generator(s)

All default to false. Matching, deformable convolution and the decoupled dynamic filter are decorated with
:func:`frfsr_plugin.ops.precision.float32_op`, so bf16 autocast only reaches plain convolutions and element-wise ops.
"""
import contextlib

import torch

from frfsr_plugin.utils.errors import OptionError

SPEED_OPTIONS = ('channels_last', 'bf16', 'compile')


def parse_speed_options(opt):
    """The ``speed`` section of ``opt`` as a dict of the three booleans (absent keys are False).

    Args:
        opt (dict): Parsed options.

    Returns:
        dict[str, bool]: ``channels_last``, ``bf16`` and ``compile``.
    """
    section = opt.get('speed') or {}
    if not isinstance(section, dict):
        raise OptionError(f'option `speed` must be a mapping of {", ".join(SPEED_OPTIONS)}, got {section!r}.')
    unknown = sorted(set(section) - set(SPEED_OPTIONS))
    if unknown:
        raise OptionError(f'option `speed.{unknown[0]}` is unknown; known: {", ".join(SPEED_OPTIONS)}.')
    for key, value in section.items():
        if not isinstance(value, bool):
            raise OptionError(f'option `speed.{key}` must be true or false, got {value!r}.')
    return {key: section.get(key, False) for key in SPEED_OPTIONS}


def speed_up_network(net, speed):
    """Apply ``channels_last`` (in place) and ``compile`` to a generator.

    Args:
        net (nn.Module): The network, already on its device.
        speed (dict[str, bool]): From :func:`parse_speed_options`.

    Returns:
        nn.Module: ``net``, or its ``torch.compile`` wrapper (which shares its parameters and state dict keys under
        ``_orig_mod.``; use :func:`uncompiled` to save it).
    """
    if speed['channels_last']:
        net = net.to(memory_format=torch.channels_last)
    if speed['compile']:
        net = torch.compile(net)
    return net


def uncompiled(net):
    """The module inside a ``torch.compile`` wrapper, or ``net`` itself."""
    return getattr(net, '_orig_mod', net)


def autocast_context(device, speed):
    """bf16 autocast on ``device`` when ``speed['bf16']``, else a no-op context.

    Args:
        device (torch.device): Device of the network.
        speed (dict[str, bool]): From :func:`parse_speed_options`.
    """
    if speed['bf16']:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
