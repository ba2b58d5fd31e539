"""``frfsr infer --explain``: the per-pixel match maps, the warped reference, the explanation image and its summary.

Real photos (scikit-image's coffee, chelsea) with the loud tiny networks of ``tests/conftest.py``, as in
``tests/test_reference_sets.py``; the CLI builds its inferencer after ``torch.manual_seed(0)``, as the tests' own
inferencers are built, so both have the same random frozen networks.
"""
import re

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import data as skimage_data

from frfsr_plugin.cli import frfsr_cli
from frfsr_plugin.cli.explain import PANEL_LABELS, confidence_range
from frfsr_plugin.data.transforms import pil_bicubic_resize
from frfsr_plugin.ops.reference_set import layout_references
from frfsr_plugin.restoration.explanation import explain_matches, patch_map_to_pixels, summarize
from frfsr_plugin.restoration.inference import RefSRInferencer
from frfsr_plugin.utils.colormap import VIRIDIS, category_colours, colormap
from frfsr_plugin.utils.comparison import GAP, LABEL_HEIGHT, label_strip, panel_scale

LR_SIZE = (40, 56)  # (h, w); SR 160x224
SR_SIZE = (160, 224)
SUMMARY = re.compile(r'^(?P<name>\S+): mean confidence (?P<mean>[-\d.]+), (?P<above>[\d.]+)% of pixels above '
                     r'(?P<threshold>[-\d.]+); drawn from (?P<shares>.+)$')


@pytest.fixture(scope='module')
def photos():
    """As in tests/test_reference_sets.py: the LR (a coffee crop, PIL-bicubic /4), a relevant reference (a displaced
    crop of the same photo, 200x160) and an unrelated one (chelsea, 240x200)."""
    coffee = skimage_data.coffee()
    return {
        'lr': pil_bicubic_resize(coffee[60:220, 150:374], LR_SIZE),
        'relevant': coffee[100:260, 200:400],
        'unrelated': skimage_data.chelsea()[:200, :240],
    }


def seeded_inferencer(yml, weights, **kwargs):
    torch.manual_seed(0)
    return RefSRInferencer(yml, weights, **kwargs)


@pytest.fixture(scope='module')
def stage1(loud_checkpoints):
    return seeded_inferencer(loud_checkpoints['stage1'], loud_checkpoints['net1'])


def replicate_pixels(patch_map, lr_size=LR_SIZE):
    """The top-left convention written directly: replicate-pad bottom/right by 2, crop to the LR."""
    padded = F.pad(patch_map[:, None].double(), (0, 2, 0, 2), mode='replicate')[:, 0]
    return padded[..., :lr_size[0], :lr_size[1]]


def test_pixel_maps_replicate_the_last_patch_and_crop_the_padded_canvas():
    patch_map = torch.arange(2 * 5 * 7).reshape(2, 5, 7)
    assert torch.equal(patch_map_to_pixels(patch_map, (7, 9)), replicate_pixels(patch_map, (7, 9)).long())
    cropped = patch_map_to_pixels(patch_map, (4, 6))  # a padded canvas of 7x9 for a 4x6 LR
    assert torch.equal(cropped, patch_map[:, :4, :6])


def test_colormap_interpolates_viridis_and_categories_are_distinct():
    values = torch.tensor([[0.0, 1.0, 0.5, 1 / 16, 2.0]])
    colours = colormap(values, 0.0, 1.0)[:, 0].T
    assert torch.allclose(colours[:3], VIRIDIS[[0, 8, 4]]) and torch.allclose(colours[4], VIRIDIS[8])
    assert torch.allclose(colours[3], (VIRIDIS[0] + VIRIDIS[1]) / 2)
    assert torch.allclose(colormap(values * 2 - 1, -1.0, 1.0), colormap(values, 0.0, 1.0))
    palette = category_colours(14)
    assert palette.shape == (14, 3) and len({tuple(colour.tolist()) for colour in palette}) == 14


def canvas_of(refs):
    """The reference canvas built directly: each reference pasted at 4x its box."""
    layout = layout_references([(ref.shape[-2] // 4, ref.shape[-1] // 4) for ref in refs])
    canvas = torch.zeros(1, 3, 4 * layout.size[0], 4 * layout.size[1])
    for ref, (top, left, height, width) in zip(refs, layout.boxes):
        canvas[..., 4 * top:4 * (top + height), 4 * left:4 * (left + width)] = ref
    return canvas, layout.patch_grid_width


def test_maps_and_warped_reference_equal_direct_formulas(stage1, photos):
    """{unrelated, relevant}: the source map favours the relevant crop, the maps are the matches under the top-left
    convention, and the warped reference (integer flows) is the canvas gathered at the matched patches' pixels: SR
    pixel (Y, X) of LR patch (y, x) = (Y // 4, X // 4) matched at canvas patch (r, c) takes canvas pixel
    (4 r + Y % 4, 4 c + X % 4)."""
    restoration, inputs = stage1.super_resolve_with_inputs(photos['lr'], [photos['unrelated'], photos['relevant']])
    matches = restoration.matches
    explanation = explain_matches(matches, inputs.batch['ref'], LR_SIZE)
    assert explanation.num_refs == 2 and explanation.warped_ref.shape == (1, 3, *SR_SIZE)
    assert torch.allclose(explanation.confidence.double(), replicate_pixels(matches.similarity))
    assert torch.equal(explanation.source, replicate_pixels(matches.source).long())
    summary = summarize(explanation, 0.5)
    assert summary.shares[1] > 0.7 and abs(sum(summary.shares) - 1) < 1e-6, summary
    canvas, grid_width = canvas_of(inputs.batch['ref'])
    rows, cols = torch.div(matches.index[0], grid_width, rounding_mode='floor'), matches.index[0] % grid_width
    height, width = (4 * (side - 2) for side in LR_SIZE)  # the patches' top-left pixels; the flow is zero beyond
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing='ij')
    gathered = canvas[0][:, 4 * rows[ys // 4, xs // 4] + ys % 4, 4 * cols[ys // 4, xs // 4] + xs % 4]
    assert torch.allclose(explanation.warped_ref[0, :, :height, :width], gathered, atol=1e-5)
    assert explanation.warped_ref.abs().mean() > 0.1


def write_rgb(path, rgb):
    cv2.imwrite(str(path), cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
    return str(path)


def read_rgb(path):
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB).astype(np.int16)


def to_uint8(image):
    """(3, H, W) in [0, 1] -> (H, W, 3) int16, rounded as the PNG writer rounds."""
    return (image.clamp(0, 1).permute(1, 2, 0) * 255).round().numpy().astype(np.int16)


def run_explain(capsys, stage, lr, refs, out, *extra):
    """``frfsr infer --explain`` in process after seeding, one ``--ref`` per reference; returns (exit code, stdout
    lines, stderr)."""
    torch.manual_seed(0)
    ref_args = [arg for ref in refs for arg in ('--ref', ref)]
    code = frfsr_cli.main(
        ['infer', '--opt', stage[0], '--weights', stage[1], '--lr', lr, *ref_args, '-o',
         str(out), '--explain', *extra])
    captured = capsys.readouterr()
    return code, captured.out.strip().splitlines(), captured.err


def panels_of(image, factor, panel_size=SR_SIZE):
    """The four panels (H f, W f, 3) of an explanation image, from the layout of ``labelled_side_by_side``."""
    height, width = (factor * side for side in panel_size)
    lefts = [index * (width + GAP) for index in range(len(PANEL_LABELS))]
    return [image[LABEL_HEIGHT:LABEL_HEIGHT + height, left:left + width] for left in lefts], lefts, width


def test_explain_image_and_summary_of_a_stage1_reference_set(loud_checkpoints, stage1, photos, capsys, tmp_path):
    lr = write_rgb(tmp_path / 'coffee.png', photos['lr'])
    refs = [write_rgb(tmp_path / 'cat.png', photos['unrelated']), write_rgb(tmp_path / 'crop.png', photos['relevant'])]
    out = tmp_path / 'sr.png'
    code, lines, stderr = run_explain(capsys, (loud_checkpoints['stage1'], loud_checkpoints['net1']), lr, refs, out,
                                      '--explain-threshold', '0.98')
    assert code == 0, stderr
    restoration = stage1.super_resolve(photos['lr'], [photos['unrelated'], photos['relevant']])
    similarity = replicate_pixels(restoration.matches.similarity)
    source = replicate_pixels(restoration.matches.source).long()
    assert len(lines) == 1
    fields = SUMMARY.match(lines[0])
    assert fields and fields['name'] == 'coffee.png' and fields['threshold'] == '0.98', lines
    assert float(fields['mean']) == pytest.approx(similarity.mean().item(), abs=6e-5)
    assert float(fields['above']) == pytest.approx(100 * (similarity > 0.98).double().mean().item(), abs=0.06)
    shares = 100 * torch.bincount(source.flatten(), minlength=2).double() / source.numel()
    assert fields['shares'] == f'cat.png {shares[0]:.1f}%, crop.png {shares[1]:.1f}%'
    assert 0 < float(fields['above']) < 100  # the threshold splits these matches

    image, sr = read_rgb(tmp_path / 'sr_explain.png'), read_rgb(out)
    factor = panel_scale([torch.zeros(3, *SR_SIZE)])
    panels, lefts, width = panels_of(image, factor)
    assert image.shape[1] == lefts[-1] + width and image.shape[0] > LABEL_HEIGHT + factor * SR_SIZE[0] + GAP
    for label, left in zip(PANEL_LABELS, lefts):
        assert np.array_equal(image[:LABEL_HEIGHT, left:left + width], to_uint8(label_strip(label, width))), label

    def upscaled(rgb):
        return rgb.repeat(factor, 0).repeat(factor, 1)

    confidence = colormap(similarity[0].float().repeat_interleave(4, 0).repeat_interleave(4, 1),
                          *confidence_range(similarity.float()))
    assert np.abs(panels[0] - upscaled(to_uint8(confidence))).max() <= 1
    colours = category_colours(2)[source[0].repeat_interleave(4, 0).repeat_interleave(4, 1)].permute(2, 0, 1)
    assert np.array_equal(panels[1], upscaled(to_uint8(colours)))
    assert np.array_equal(panels[3], upscaled(sr))
    assert np.abs(panels[2] - panels[3]).mean() > 5  # the warped reference is not the SR


def test_two_stage_padded_canvas_explains_each_image_of_an_lr_folder(loud_checkpoints, photos, capsys, tmp_path):
    """Two LR images of a folder, two references (``--ref-dir``) stitched into one on the padded canvas (the LR padded
    to the stitched reference's size): one explanation per image, its maps cropped to the LR, named by both
    references."""
    folder, references = tmp_path / 'lr', tmp_path / 'refs'
    folder.mkdir()
    references.mkdir()
    write_rgb(folder / 'a.png', photos['lr'])
    write_rgb(folder / 'b.png', photos['lr'][:, ::-1])
    write_rgb(references / 'cat.png', photos['unrelated'])
    write_rgb(references / 'crop.png', photos['relevant'])
    stage2 = (loud_checkpoints['stage2'], loud_checkpoints['net2'])
    code, lines, stderr = run_explain(capsys, stage2, str(folder), [], tmp_path / 'out', '--ref-dir', str(references),
                                      '--ref-canvas', 'padded')
    assert code == 0, stderr
    assert [SUMMARY.match(line)['name'] for line in lines] == ['a.png', 'b.png'], lines
    assert all(line.endswith('drawn from cat.png + crop.png 100.0%') for line in lines), lines
    factor = panel_scale([torch.zeros(3, *SR_SIZE)])
    for name in ('a', 'b'):
        panels, _, _ = panels_of(read_rgb(tmp_path / 'out' / f'{name}_explain.png'), factor)
        assert np.array_equal(panels[3], read_rgb(tmp_path / 'out' / f'{name}.png').repeat(factor, 0).repeat(factor, 1))
    inferencer = seeded_inferencer(*stage2, canvas='padded')
    restoration, inputs = inferencer.super_resolve_with_inputs(photos['lr'], [photos['unrelated'], photos['relevant']])
    assert restoration.sr_stage1 is not None and restoration.matches.similarity.shape[-2:] != (38, 54)
    explanation = explain_matches(restoration.matches, inputs.batch['ref'], LR_SIZE)
    assert explanation.num_refs == 1 and explanation.confidence.shape == (1, *LR_SIZE)
    assert torch.allclose(explanation.confidence.double(), restoration.matches.similarity[:, :40, :56].double())
    mean = float(SUMMARY.match(lines[0])['mean'])
    assert mean == pytest.approx(summarize(explanation).mean_confidence, abs=6e-5)


@pytest.mark.parametrize('threshold', ['2', '-1.5'])
def test_a_threshold_outside_the_cosine_range_is_one_line(loud_checkpoints, photos, capsys, tmp_path, threshold):
    lr, ref = write_rgb(tmp_path / 'lr.png', photos['lr']), write_rgb(tmp_path / 'ref.png', photos['relevant'])
    code, _, stderr = run_explain(capsys, (loud_checkpoints['stage1'], loud_checkpoints['net1']), lr, [ref],
                                  tmp_path / 'sr.png', '--explain-threshold', threshold)
    lines = stderr.strip().splitlines()
    assert code == 1 and len(lines) == 1 and 'Traceback' not in stderr, stderr
    assert lines[0] == f'frfsr infer: error: --explain-threshold must lie in [-1, 1] (a cosine similarity), got ' \
        f'{float(threshold)}.'
    assert not (tmp_path / 'sr.png').exists()
