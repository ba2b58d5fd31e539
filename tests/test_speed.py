"""Speed options (channels_last, bf16 autocast, compile switch) keep results; precision-sensitive ops stay float32."""
import pytest
import torch
import torch.nn.functional as F
from basicsr.utils.registry import ARCH_REGISTRY
from helpers import tiny_networks

from frfsr_plugin.ops import deform_conv
from frfsr_plugin.ops.ddf import ddf_mul, ddf_mul_unfold
from frfsr_plugin.ops.patch_match import match_patches
from frfsr_plugin.restoration.pipeline import ReferencePipeline
from frfsr_plugin.utils.errors import OptionError
from frfsr_plugin.utils.speed import autocast_context, parse_speed_options, speed_up_network, uncompiled


@pytest.fixture(scope='module')
def tiny_generator_and_context():
    from skimage import data as skimage_data
    torch.manual_seed(0)
    nets = tiny_networks()
    pipeline = ReferencePipeline.from_options(nets)
    generator = ARCH_REGISTRY.get('FRFSRNet')(**{k: v for k, v in nets['network_g'].items() if k != 'type'}).eval()
    photo = torch.from_numpy(skimage_data.astronaut()[100:196, 150:246].copy()).permute(2, 0, 1)[None].float() / 255
    lq = F.interpolate(photo, scale_factor=0.25, mode='bicubic', align_corners=False).clamp(0, 1)
    lq_up = F.interpolate(lq, scale_factor=4, mode='bicubic', align_corners=False)
    ref = torch.roll(photo, shifts=(8, -12), dims=(2, 3))
    return generator, lq, pipeline.reference_context(lq, lq_up, ref)


def test_speed_options_parse_and_reject_bad_values():
    assert parse_speed_options({}) == {'channels_last': False, 'bf16': False, 'compile': False}
    assert parse_speed_options({'speed': {'bf16': True}})['bf16'] is True
    with pytest.raises(OptionError, match='speed.fp8'):
        parse_speed_options({'speed': {'fp8': True}})
    with pytest.raises(OptionError, match='speed.bf16` must be true or false'):
        parse_speed_options({'speed': {'bf16': 'yes'}})


def test_precision_sensitive_ops_run_in_float32_under_bf16_autocast():
    x, channel_filter, spatial_filter = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 9), torch.randn(1, 9, 8, 8)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = ddf_mul(x, channel_filter, spatial_filter)
        idx, _ = match_patches(torch.randn(1, 8, 6, 6), torch.randn(1, 8, 6, 6))
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ddf_mul_unfold(x, channel_filter, spatial_filter), rtol=1e-5, atol=1e-5)
    assert idx.dtype == torch.int64


def test_channels_last_gives_the_same_sr(tiny_generator_and_context):
    generator, lq, context = tiny_generator_and_context
    with torch.no_grad():
        reference = generator(lq, context)
        speed = {'channels_last': True, 'bf16': False, 'compile': False}
        fast = speed_up_network(generator, speed)(lq, context)
        generator.to(memory_format=torch.contiguous_format)
    assert fast.shape == reference.shape
    assert (fast - reference).abs().max() < 1e-4


def test_bf16_autocast_stays_close_and_keeps_dcn_in_float32(tiny_generator_and_context, monkeypatch):
    generator, lq, context = tiny_generator_and_context
    dcn_dtypes = []
    original = deform_conv.grid_sample_modulated_deform_conv2d  # the tiny nets use dcn_backend pytorch

    def recording(x, offset, mask, weight, bias, **kwargs):
        dcn_dtypes.extend(tensor.dtype for tensor in (x, offset, mask, weight))
        return original(x, offset, mask, weight, bias, **kwargs)

    monkeypatch.setattr(deform_conv, 'grid_sample_modulated_deform_conv2d', recording)
    speed = {'channels_last': False, 'bf16': True, 'compile': False}
    with torch.no_grad():
        reference = generator(lq, context)
        with autocast_context(lq.device, speed):
            fast = generator(lq, context).float()
    # bf16 keeps 8 mantissa bits: the SR (values in about [0, 1]) moves by far less than one 8-bit grey level
    assert (fast - reference).abs().max() < 2 / 255
    assert (fast - reference).abs().max() > 0  # autocast did reach the plain convolutions
    assert dcn_dtypes and set(dcn_dtypes) == {torch.float32}


def test_compile_switch_wraps_and_unwraps():
    net = torch.nn.Conv2d(3, 3, 3)
    compiled = speed_up_network(net, {'channels_last': False, 'bf16': False, 'compile': True})
    assert compiled is not net and uncompiled(compiled) is net
    assert uncompiled(net) is net
