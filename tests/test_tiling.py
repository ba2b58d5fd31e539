"""Tiled restoration and the memory budget of inference, on a real photo with tiny random networks.

The networks get "loud" random weights (every conv N(0, 0.7^2 / fan_in), random offset branches), so that every
layer, ESA and the DDF's global pooling change the output; the tail is scaled so that the residual SR - bilinear has a
photo-like standard deviation of about 0.04.
"""
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from basicsr.archs import build_network
from basicsr.utils import tensor2img
from helpers import make_loud, tiny_networks
from skimage import data as skimage_data
from torch import nn

from frfsr_plugin.archs.alignment import TextureAlignment
from frfsr_plugin.data.transforms import pil_bicubic_resize
from frfsr_plugin.ops.deform_conv import grid_sample_modulated_deform_conv2d, modulated_deform_conv2d
from frfsr_plugin.restoration.inference import RefSRInferencer, to_batch
from frfsr_plugin.restoration.tiling import blend_weights, check_supports_tiling, restore_in_tiles, tile_spans
from frfsr_plugin.utils.errors import OptionError

LR_SIZE = (40, 56)  # (h, w): 2 x 3 tiles of at most 32 LR pixels
TILE, OVERLAP = 32, 8


@pytest.fixture(scope='module')
def photo_pair():
    """LR 56x40 (PIL-bicubic /4 of a 224x160 crop of skimage's coffee) and a 224x160 Ref from a displaced crop."""
    photo = skimage_data.coffee()
    gt = photo[60:220, 150:374]
    return pil_bicubic_resize(gt, LR_SIZE), photo[100:260, 200:424]


def test_tiles_cover_the_canvas_and_blend_weights_sum_to_one():
    for size in (32, 33, 48, 64):
        for overlap in range(0, size // 3 + 1, 3):
            for length in range(15, 220, 7):
                spans = tile_spans(length, size, overlap)
                assert spans[0][0] == 0 and spans[-1][1] == length
                if len(spans) == 1:
                    assert length <= size
                    continue
                assert all(15 <= stop - start <= size for start, stop in spans)
                assert all(spans[i][1] - spans[i + 1][0] == overlap for i in range(len(spans) - 1))
                assert all(spans[i + 2][0] >= spans[i][1] for i in range(len(spans) - 2))  # only neighbours overlap
                weights = blend_weights(spans, 4, torch.float64)
                total = torch.zeros(4 * length, dtype=torch.float64)
                for (start, stop), weight in zip(spans, weights):
                    total[4 * start:4 * stop] += weight
                assert torch.allclose(total, torch.ones_like(total), atol=1e-12)
                # the outer quarter of each shared band (next to a tile's edge) is dropped
                assert all((weight[:overlap] == 0).all() for weight in weights[1:])
                assert all((weight[weight.numel() - overlap:] == 0).all() for weight in weights[:-1])


def test_deformable_conv_output_window_equals_the_whole_convs_window():
    torch.manual_seed(0)
    x = torch.randn(1, 16, 20, 24, dtype=torch.float64)
    weight, bias = torch.randn(8, 16, 3, 3, dtype=torch.float64), torch.randn(8, dtype=torch.float64)
    offset = torch.randn(1, 2 * 2 * 9, 20, 24, dtype=torch.float64) * 6  # 2 groups; samples far outside the window
    mask = torch.rand(1, 2 * 9, 20, 24, dtype=torch.float64)
    whole = torchvision.ops.deform_conv2d(x, offset, weight, bias, padding=1, mask=mask)
    # origin 0 and equal sizes: the grid_sample formulation is torchvision's deformable conv
    assert torch.allclose(grid_sample_modulated_deform_conv2d(x, offset, mask, weight, bias), whole, atol=1e-10)
    top, left, height, width = 5, 7, 9, 11
    crop = (..., slice(top, top + height), slice(left, left + width))
    for backend in ('torchvision', 'pytorch'):  # an output window always takes the grid_sample formulation
        window = modulated_deform_conv2d(x, offset[crop], mask[crop], weight, bias, backend=backend, origin=(top, left))
        assert window.shape == (1, 8, height, width)
        assert torch.allclose(window, whole[crop], atol=1e-10)
    # offsets within +-0.9: the window equals the plain deformable conv on the crop with a 2-pixel margin
    small = torch.rand_like(offset) * 1.8 - 0.9
    margin = (..., slice(top - 2, top + height + 2), slice(left - 2, left + width + 2))
    plain = torchvision.ops.deform_conv2d(x[margin], small[margin], weight, bias, padding=1, mask=mask[margin])
    window = grid_sample_modulated_deform_conv2d(x, small[crop], mask[crop], weight, bias, origin=(top, left))
    assert torch.allclose(window, plain[..., 2:-2, 2:-2], atol=1e-10)


class LocalRefNet(nn.Module):
    """A RefSR net with a FAM and a receptive field of 5 HR pixels (2 LR pixels): tiles must reproduce it."""

    supports_tiling = True

    def __init__(self):
        super().__init__()
        self.conv_first = nn.Conv2d(3, 16, 3, 1, 1)
        self.align = TextureAlignment(64, 16, 8, 'torchvision')
        self.tail = nn.Conv2d(16 + 64, 3, 3, 1, 1)

    def forward(self, lq, context):
        x = self.conv_first(F.interpolate(lq, scale_factor=4, mode='nearest'))
        aligned = self.align(x, context['warped_ref_feats'][0], context['ref_feats'][0], context['pre_offsets'][0])
        return self.tail(torch.cat([x, aligned], 1))


def photo_context(photo_pair):
    nets = {key: build_network(opt).eval() for key, opt in tiny_networks().items() if key != 'network_g'}
    lr, ref = photo_pair
    lq = to_batch(lr, 'cpu')
    with torch.no_grad():
        feat_lq, feat_ref = nets['network_extractor'](to_batch(pil_bicubic_resize(lr, ref.shape[:2]), 'cpu'),
                                                      to_batch(ref, 'cpu'))
        context = nets['network_map'](feat_lq, feat_ref, to_batch(ref, 'cpu'))
    del context['matches']  # not on the LR grid: the reference pipeline takes it out before tiles are cut
    return lq, context


def test_tiles_reproduce_a_local_network_exactly_with_ref_sampled_outside_the_tile(photo_pair):
    lq, context = photo_context(photo_pair)
    net = make_loud(LocalRefNet(), gain=1.0, tail_gain=1.0).eval()
    pre_offsets = context['pre_offsets'][0]
    assert pre_offsets.abs().max() > 4 * TILE  # matches point further than a tile: tiles sample the whole Ref
    with torch.no_grad():
        whole = net(lq, context)
        tiled = restore_in_tiles(lambda tile_lq, tile_context: {'output': net(tile_lq, tile_context)}, lq, context,
                                 TILE, OVERLAP)['output']
    assert whole.std() > 0.1
    # float rounding only (grid_sample vs torchvision sampling, 1e-6 relative)
    assert torch.allclose(tiled, whole, rtol=1e-5, atol=1e-5)


def test_tiled_stage1_and_two_stage_match_whole_image(loud_checkpoints, photo_pair):
    """Tiles of 32 LR pixels overlapping by 8 (2 x 3 tiles) against the whole canvas, residual SR - bilinear std 0.04.

    Measured max |tiled - whole| on [0, 1] floats: stage 1 (Net1) 0.0035 (0.9 of 255 levels; mean 5e-5), two-stage
    (Net2) 0.0030 (0.8 levels; mean 6e-5); the uint8 SR images differ by at most 1 level (mean 0.016). What remains
    comes from ESA's size-dependent attention map and the DDF's global pooling (frfsr_plugin/restoration/tiling.py).
    """
    lr, ref = photo_pair
    inferencer = RefSRInferencer(loud_checkpoints['stage2'], loud_checkpoints['net2'], tile_overlap=OVERLAP)
    batch, (height, width) = inferencer.prepare(lr, ref)
    outputs = {}
    for tile_size in (None, TILE):
        restoration = inferencer.restore(batch, tile_size, inferencer.max_corr_elements)
        sr, sr_stage1 = (image[..., :height, :width] for image in (restoration.sr, restoration.sr_stage1))
        outputs[tile_size] = (tensor2img(sr, rgb2bgr=False), sr_stage1, sr)
    bilinear = F.interpolate(to_batch(lr, 'cpu'), scale_factor=4, mode='bilinear', align_corners=False)
    for index, name in ((1, 'stage 1'), (2, 'two-stage')):
        whole, tiled = outputs[None][index], outputs[TILE][index]
        assert 0.02 < (whole - bilinear).std() < 0.1, name  # the networks change the image substantially
        difference = (tiled - whole).abs()
        assert difference.max() < 0.006 and difference.mean() < 2e-4, (name, difference.max(), difference.mean())
    levels = np.abs(outputs[TILE][0].astype(int) - outputs[None][0].astype(int))
    assert levels.max() <= 2 and levels.mean() < 0.05


def write_rgb(path, rgb):
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return str(path)


@pytest.mark.integration
def test_reference_over_the_memory_budget_is_named_by_frfsr_infer(loud_checkpoints, photo_pair, tmp_path):
    lr, _ = photo_pair
    big_ref = cv2.resize(skimage_data.coffee(), (2000, 1500), interpolation=cv2.INTER_LINEAR)
    result = subprocess.run([
        sys.executable, '-m', 'frfsr_plugin.cli.frfsr_cli', 'infer', '--opt', loud_checkpoints['stage1'], '--weights',
        loud_checkpoints['net1'], '--lr',
        write_rgb(tmp_path / 'lr.png', lr), '--ref',
        write_rgb(tmp_path / 'big_ref.png', big_ref), '-o',
        str(tmp_path / 'sr.png'), '--max-memory-mb', '2000'
    ],
                            capture_output=True,
                            text=True,
                            timeout=300)
    assert result.returncode == 1 and 'Traceback' not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('frfsr infer: error: reference ')
    assert 'big_ref.png' in lines[0] and '(2000x1500, HR canvas 2000x1500)' in lines[0]
    assert 'over the budget of 2000 MB' in lines[0] and 'downscale the reference' in lines[0]
    assert '--max-memory-mb' in lines[0]


AUTO_TILE_CHILD = '''
import json, re, sys
from frfsr_plugin.restoration import memory
from frfsr_plugin.data.transforms import read_image_rgb
from frfsr_plugin.restoration.inference import RefSRInferencer
opt, weights, lr_path, ref_path = sys.argv[1:]
lr, ref = read_image_rgb(lr_path), read_image_rgb(ref_path)
inferencer = RefSRInferencer(opt, weights, tile_overlap=8, max_memory_mb=1e6, canvas='padded')  # budget set below
with open('/proc/self/clear_refs', 'w') as clear_refs:  # resets the peak: measure the image, not the loading
    clear_refs.write('5')
pixels = 16 * lr.shape[0] * lr.shape[1]
# budget: what the networks use now, the fixed overheads, the context kept for the tiles and the forward of a 32x40 tile
kept = memory.kept_bytes_per_pixel(inferencer.generator.sife_channels, 1) * pixels
tile_bytes = inferencer.generator.inference_bytes_per_pixel() * 16 * 32 * 40
inferencer.max_memory = inferencer.baseline_memory + memory.FIXED_BYTES + kept + tile_bytes
tile_size, _ = inferencer.plan(lr.shape[:2], ref.shape[:2], ref_path)
sr = inferencer(lr, ref, ref_path)
with open('/proc/self/status') as status:
    peak = int(re.search(r'VmHWM:\\s+(\\d+) kB', status.read()).group(1)) * 1024
print(json.dumps({'tile': tile_size, 'budget': inferencer.max_memory, 'baseline': inferencer.baseline_memory,
                  'peak': peak, 'shape': list(sr.shape)}))
'''


@pytest.mark.integration
def test_automatic_tile_size_fits_the_budget_and_the_run_stays_under_it(loud_checkpoints, photo_pair, tmp_path):
    """The budget is what the networks use after loading (about 870 MB here) plus the estimate for the fixed
    overheads, the context kept for the tiles and a 32x40 tile (about 190 MB), on the papers' padded canvas (its kept
    context is ``kept_bytes_per_pixel`` times the canvas). Under the budget's allocator setting the image's peak
    repeats to a fraction of a MB; it was measured at about 75% of the image's share of the budget."""
    lr, ref = photo_pair
    result = subprocess.run([
        sys.executable, '-c', AUTO_TILE_CHILD, loud_checkpoints['stage1'], loud_checkpoints['net1'],
        write_rgb(tmp_path / 'lr.png', lr),
        write_rgb(tmp_path / 'ref.png', ref)
    ],
                            capture_output=True,
                            text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    run = json.loads(result.stdout.strip().splitlines()[-1])
    # the largest size whose tiles fit: size 55 cuts the 56x40 canvas into two tiles of 32x40, 56 would be one
    assert run['tile'] == 55 and run['shape'] == [4 * LR_SIZE[0], 4 * LR_SIZE[1], 3]
    # under the budget, and not by a loose estimate: the image uses most of its share
    image_share = run['budget'] - run['baseline']
    assert 0.6 * image_share <= run['peak'] - run['baseline'] <= image_share, run


def test_tiling_needs_generators_that_declare_it():
    net1_opt = tiny_networks()['network_g']
    wrapped = build_network({
        'type': 'FeatureReuseNet',
        'base': net1_opt,
        'fusion_targets': {
            'tail': 16
        },
        'reuse_channels': 16
    })
    assert wrapped.supports_tiling
    assert wrapped.inference_bytes_per_pixel() == wrapped.base.inference_bytes_per_pixel() + 4 * 16
    with pytest.raises(OptionError, match=r'val.tile: Conv2d cannot be restored in tiles'):
        check_supports_tiling(nn.Conv2d(3, 3, 3))
