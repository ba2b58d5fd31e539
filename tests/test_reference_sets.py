"""References of their own size and reference sets (the decoupled canvas), against the papers' padded protocol.

Real photos (scikit-image's coffee, chelsea) with tiny random networks: the restoration networks have the loud
weights of ``helpers.make_loud``; for matching, the random encoder's two branches start identical
(``FRFSRContrastiveEncoder``), so it maps both images into one feature space.
"""
import os

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import data as skimage_data

from frfsr_plugin.cli import frfsr_cli
from frfsr_plugin.data.transforms import pil_bicubic_resize
from frfsr_plugin.ops.ref_window import RefWindow
from frfsr_plugin.ops.reference_set import REFERENCE_GAP, layout_references, merge_matches, place_on_canvas
from frfsr_plugin.restoration.inference import RefSRInferencer, to_batch
from frfsr_plugin.utils.errors import InputSizeError

LR_SIZE = (40, 56)  # (h, w); SR 160x224
TILE, OVERLAP = 32, 8


@pytest.fixture(scope='module')
def photos():
    """LR 56x40 (PIL-bicubic /4 of a 224x160 crop of coffee), references from displaced crops of the same photo (one
    of exactly the SR size, one 24 pixels narrower), and an unrelated one (chelsea, the cat)."""
    coffee = skimage_data.coffee()
    return {
        'lr': pil_bicubic_resize(coffee[60:220, 150:374], LR_SIZE),
        'hr_size': coffee[100:260, 200:424],
        'narrow': coffee[100:260, 200:400],
        'unrelated': skimage_data.chelsea()[:200, :240],
    }


def seeded_inferencer(yml, weights, **kwargs):
    """An inferencer whose random frozen networks do not depend on the tests run before (seed 0)."""
    torch.manual_seed(0)
    return RefSRInferencer(yml, weights, **kwargs)


@pytest.fixture(scope='module')
def two_stage(loud_checkpoints):
    """One two-stage inferencer (loud Net1 and Net2); tests switch its ``canvas``, so both canvases share the frozen
    random networks."""
    return seeded_inferencer(loud_checkpoints['stage2'], loud_checkpoints['net2'])


@pytest.fixture(scope='module')
def stage1(loud_checkpoints):
    return seeded_inferencer(loud_checkpoints['stage1'], loud_checkpoints['net1'], tile_overlap=OVERLAP)


def on_canvas(inferencer, canvas, lr, ref):
    inferencer.canvas = canvas
    try:
        return inferencer.super_resolve(lr, ref)
    finally:
        inferencer.canvas = 'decoupled'


def test_canvases_agree_bit_for_bit_for_a_reference_of_the_sr_size(two_stage, photos):
    """Neither canvas pads a reference of exactly 4x the LR's size, and the decoupled route (a reference set of one,
    seen from the LR grid) gives the padded protocol's SR, stage-1 SR and matches bit for bit."""
    padded, decoupled = (
        on_canvas(two_stage, canvas, photos['lr'], photos['hr_size']) for canvas in ('padded', 'decoupled'))
    assert decoupled.sr.shape == (1, 3, 160, 224)
    assert torch.equal(padded.sr, decoupled.sr) and torch.equal(padded.sr_stage1, decoupled.sr_stage1)
    assert all(torch.equal(a, b) for a, b in zip(padded.matches, decoupled.matches))


def test_canvases_agree_away_from_the_padding(two_stage, photos):
    """A 200x160 reference for a 224x160 SR: the padded protocol adds 24 black columns to the reference (the LR needs
    no padding); the decoupled canvas has none and samples zeros beyond the reference's edge.

    Measured on [0, 1] floats, SR (stage-1 SR): max |padded - decoupled| 0.0045 (0.0050) more than 32 pixels left of
    the reference's right edge, mean 4e-5 (5e-5); over the whole SR 0.0082 (0.0123), about 2 (3) of 255 levels.
    Differences reach the left side through the global pooling of the DDF channel branch and ESA's stretched
    attention (``restoration/tiling.py``) and through LR patches that matched the padding's black patches.
    """
    padded, decoupled = (
        on_canvas(two_stage, canvas, photos['lr'], photos['narrow']) for canvas in ('padded', 'decoupled'))
    bilinear = F.interpolate(to_batch(photos['lr'], 'cpu'), scale_factor=4, mode='bilinear', align_corners=False)
    for name in ('sr', 'sr_stage1'):
        whole = (getattr(padded, name) - getattr(decoupled, name)).abs()
        away = whole[..., :200 - 32]
        assert 0.02 < (getattr(padded, name) - bilinear).std() < 0.1, name  # the networks change the image
        assert away.max() < 0.0075 and away.mean() < 1e-4, (name, away.max(), away.mean())
        assert whole.max() < 0.02, (name, whole.max())


def test_matches_decode_on_the_reference_grid_and_flows_point_into_it(stage1, photos):
    """References: the unrelated photo, then the LR-up image shifted by (16, 24) HR pixels, a reference of its own
    size (144x200) that reproduces the LR's encoder features 4 rows and 6 columns further up-left. Its interior LR
    patches must find themselves (similarity 1) at canvas column ``x - 6 + left`` of the shifted reference's box, and
    flows, pre-offsets and warped features must point there."""
    lq = to_batch(photos['lr'], 'cpu')
    lq_up = to_batch(pil_bicubic_resize(photos['lr'], (160, 224)), 'cpu')
    unrelated = to_batch(photos['unrelated'], 'cpu')
    shifted = lq_up[..., 16:, 24:].clone()
    with torch.no_grad():
        context = stage1.pipeline.reference_context(lq, lq_up, [unrelated, shifted])
    layout = layout_references([(50, 60), (36, 50)])
    left = layout.boxes[1][1]
    assert left == 60 + REFERENCE_GAP and layout.size == (50, 60 + REFERENCE_GAP + 50)
    matches = context['matches']
    interior = (slice(None), slice(8, 35), slice(10, 51))  # 4 feature pixels from every border of both images
    assert (matches.similarity[interior] > 0.9999).all() and (matches.source[interior] == 1).all()
    rows, cols = torch.meshgrid(torch.arange(38), torch.arange(54), indexing='ij')
    canvas_index = (rows - 4) * layout.patch_grid_width + cols - 6 + left
    assert torch.equal(matches.index[interior], canvas_index[None].expand_as(matches.index)[interior])
    # tap 0 of the LR-scale pre-offsets is the flow itself: (dy, dx) from the LR grid into the canvas
    pre_offsets = context['pre_offsets'][2][0]
    assert (pre_offsets[0][interior[1:]] == -4).all() and (pre_offsets[1][interior[1:]] == left - 6).all()
    ref_lr_level = context['ref_feats'][2]
    assert isinstance(ref_lr_level, RefWindow) and ref_lr_level.full.shape[-2:] == layout.size
    assert ref_lr_level.local.shape[-2:] == LR_SIZE
    warped = context['warped_ref_feats'][2][..., 8:35, 10:51]
    sampled = ref_lr_level.full[..., 4:31, left + 4:left + 45]
    assert sampled.abs().mean() > 1e-3 and torch.allclose(warped, sampled, rtol=1e-4, atol=1e-7)


def test_a_reference_set_matches_at_least_as_well_as_its_relevant_reference_and_favours_it(stage1, photos):
    """{unrelated, relevant} against the relevant reference alone: every LR patch's best similarity is at least the
    one it had, where the relevant reference wins its match is the same patch, and most patches draw from it (the
    unrelated photo goes first, so that it would win every tie). Measured: 88% of the LR patches draw from the
    relevant reference; mean best similarity 0.9819 alone, 0.9837 with the set."""
    alone = stage1.super_resolve(photos['lr'], [photos['narrow']])
    both = stage1.super_resolve(photos['lr'], [photos['unrelated'], photos['narrow']])
    assert both.sr.shape == alone.sr.shape == (1, 3, 160, 224)
    assert (both.matches.similarity >= alone.matches.similarity).all()
    shares = torch.bincount(both.matches.source.flatten(), minlength=2) / both.matches.source.numel()
    assert shares[1] > 0.7, shares
    drew_relevant = both.matches.source == 1
    layout = layout_references([(50, 60), (40, 50)])
    grid_width = 50 - 2
    relevant_rows = torch.div(alone.matches.index, grid_width, rounding_mode='floor')
    on_canvas_index = relevant_rows * layout.patch_grid_width + alone.matches.index % grid_width + layout.boxes[1][1]
    assert torch.equal(both.matches.index[drew_relevant], on_canvas_index[drew_relevant])
    assert torch.equal(both.matches.similarity[drew_relevant], alone.matches.similarity[drew_relevant])


def test_tiles_of_a_reference_set_match_its_whole_image(stage1, photos):
    """2 x 3 tiles of 32 LR pixels (overlap 8) on a reference set: the tiles crop the LR-grid part of the canvas and
    sample the whole canvas. Tolerance as in tests/test_tiling.py (measured here: max 0.0038, mean 5e-5)."""
    inputs = stage1.prepare_inputs(photos['lr'], [photos['unrelated'], photos['narrow']])
    whole, tiled = (stage1.restore(inputs.batch, tile, inputs.max_corr_elements).sr for tile in (None, TILE))
    difference = (tiled - whole).abs()
    assert difference.max() < 0.006 and difference.mean() < 2e-4, (difference.max(), difference.mean())


def test_ties_go_to_the_earlier_reference_and_boxes_stay_apart():
    layout = layout_references([(5, 6), (4, 3)], gap=2)
    assert layout.boxes == ((0, 0, 5, 6), (0, 8, 4, 3)) and layout.size == (5, 11)
    # patch grids: 3x4 (index 5 is row 1, column 1) and 2x1 (index 1 is row 1); canvas patch grid width 9
    first = (torch.tensor([[[0, 5, 5]]]), torch.tensor([[[0.5, 0.7, 0.8]]]))
    second = (torch.tensor([[[1, 0, 1]]]), torch.tensor([[[0.5, 0.9, 0.6]]]))
    merged = merge_matches([first, second], layout)
    assert merged.source.tolist() == [[[0, 1, 0]]]  # a tie goes to the first reference
    assert torch.equal(merged.similarity, torch.tensor([[[0.5, 0.9, 0.8]]]))
    assert merged.index.tolist() == [[[0, 8, 10]]]
    maps = [torch.ones(1, 2, 10, 12), torch.full((1, 2, 8, 6), 2.0)]
    canvas = place_on_canvas(maps, layout, 2)
    assert canvas.shape == (1, 2, 10, 22) and (canvas[..., 12:16] == 0).all() and (canvas[..., 8:, 16:] == 0).all()
    assert (canvas[..., :8, 16:] == 2).all() and place_on_canvas(maps[:1], layout_references([(5, 6)]), 2) is maps[0]


def write_rgb(path, rgb):
    cv2.imwrite(str(path), cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
    return str(path)


def infer(loud_checkpoints, capsys, tmp_path, lr, refs, *extra):
    """``frfsr infer`` in process with one ``--ref`` per reference; returns (exit code, stderr, SR path)."""
    out = tmp_path / 'sr.png'
    ref_args = [
        arg for index, ref in enumerate(refs) for arg in ('--ref', write_rgb(tmp_path / f'ref{index}.png', ref))
    ]
    code = frfsr_cli.main([
        'infer', '--opt', loud_checkpoints['stage1'], '--weights', loud_checkpoints['net1'], '--lr',
        write_rgb(tmp_path / 'lr.png', lr), *ref_args, '-o',
        str(out), *extra
    ])
    return code, capsys.readouterr().err, out


def test_frfsr_infer_takes_a_reference_set(loud_checkpoints, photos, capsys, tmp_path):
    code, stderr, out = infer(loud_checkpoints, capsys, tmp_path, photos['lr'], [photos['unrelated'], photos['narrow']])
    assert code == 0, stderr
    assert cv2.imread(str(out)).shape == (160, 224, 3)


def one_line(stderr):
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and 'Traceback' not in stderr, stderr
    return lines[0]


def test_a_reference_set_over_the_memory_budget_is_one_line(loud_checkpoints, photos, capsys, tmp_path):
    code, stderr, _ = infer(loud_checkpoints, capsys, tmp_path, photos['lr'], [photos['unrelated'], photos['narrow']],
                            '--max-memory-mb', '1')
    line = one_line(stderr)
    assert code == 1 and line.startswith("frfsr infer: error: reference set of 2 '"), line
    assert 'ref0.png' in line and 'ref1.png' in line and '(240x200, 200x160, HR canvas 456x200)' in line
    assert 'the correspondence' in line and 'over the budget of 1 MB' in line
    assert 'use fewer references' in line and '--max-memory-mb' in line


def test_a_reference_below_one_patch_is_named(loud_checkpoints, photos, capsys, tmp_path):
    code, stderr, _ = infer(loud_checkpoints, capsys, tmp_path, photos['lr'], [photos['narrow'], photos['lr'][:10]])
    line = one_line(stderr)
    assert code == 1 and "reference '" in line and "ref1.png' is 56x10; FRFSR needs at least 12x12" in line, line


def test_the_python_api_names_the_canvas_option(loud_checkpoints):
    with pytest.raises(ValueError, match=r"--ref-canvas must be one of \('decoupled', 'padded'\), got 'tiled'"):
        RefSRInferencer(loud_checkpoints['stage1'], loud_checkpoints['net1'], canvas='tiled')


def test_reference_sizes_are_checked_against_their_features(stage1):
    with pytest.raises(InputSizeError, match='each Ref image at 4x its encoder features'):
        stage1.pipeline.correspondence(torch.rand(1, 8, 10, 10), [torch.rand(1, 8, 10, 10)], [torch.rand(1, 3, 40, 44)])


def ref_dir_infer(loud_checkpoints, capsys, tmp_path, lr, ref_dir):
    out = tmp_path / 'sr_dir.png'
    code = frfsr_cli.main([
        'infer', '--opt', loud_checkpoints['stage1'], '--weights', loud_checkpoints['net1'], '--lr',
        write_rgb(tmp_path / 'lr.png', lr), '--ref-dir',
        str(ref_dir), '-o',
        str(out)
    ])
    return code, capsys.readouterr().err, out


def test_ref_dir_uses_its_images_as_one_set_and_skips_other_files(loud_checkpoints, photos, capsys, tmp_path):
    candidates = tmp_path / 'candidates'
    candidates.mkdir()
    write_rgb(candidates / 'a.png', photos['unrelated'])
    write_rgb(candidates / 'b.jpg', photos['narrow'])
    (candidates / 'notes.txt').write_text('not an image')
    (candidates / '.hidden').write_text('')
    code, stderr, out = ref_dir_infer(loud_checkpoints, capsys, tmp_path, photos['lr'], candidates)
    assert code == 0, stderr
    skipped = candidates / 'notes.txt'
    assert one_line(stderr) == f"frfsr infer: warning: --ref-dir: skipping '{skipped}' (not an image file)"
    assert cv2.imread(str(out)).shape == (160, 224, 3)


def test_empty_or_unreadable_ref_dir_is_one_line(loud_checkpoints, photos, capsys, tmp_path, monkeypatch):
    empty = tmp_path / 'empty'
    empty.mkdir()
    (empty / 'readme.md').write_text('')
    code, stderr, _ = ref_dir_infer(loud_checkpoints, capsys, tmp_path, photos['lr'], empty)
    assert code == 1 and stderr.count('\n') == 2 and 'Traceback' not in stderr  # the skip warning, then the error
    assert stderr.strip().splitlines()[-1].startswith("frfsr infer: error: --ref-dir: no images (.png, .jpg")
    real_listdir = os.listdir

    def unreadable(path):  # root reads any folder, so the failure of a folder without read permission is injected
        if str(path) == str(empty):
            raise PermissionError(13, 'Permission denied', str(path))
        return real_listdir(path)

    monkeypatch.setattr('os.listdir', unreadable)
    code, stderr, _ = ref_dir_infer(loud_checkpoints, capsys, tmp_path, photos['lr'], empty)
    assert code == 1
    assert one_line(stderr) == f"frfsr infer: error: --ref-dir: cannot read the folder '{empty}' (Permission denied)."
