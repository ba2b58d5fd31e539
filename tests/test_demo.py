"""``frfsr demo``'s parts: the progress lines of its steps, its report (metrics table, reference-effect picture),
its data (references on the LR grid, test groups alternating photos) and the command end to end in miniature."""
import io
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
from basicsr.utils import tensor2img

from frfsr_plugin.cli import demo, frfsr_cli
from frfsr_plugin.cli.demo import TEST_SET_NAME as TEST_SET
from frfsr_plugin.cli.demo import stage2_options, train_options
from frfsr_plugin.cli.demo_data import LR_PIXEL, TEST_PHOTOS, displaced_crop, grid_aligned_origin, load_photo
from frfsr_plugin.cli.demo_progress import StepRunner, format_seconds, progress_line
from frfsr_plugin.cli.demo_report import (REPORT_CONDITIONS, bicubic_samples, metrics_table, sr_image_path,
                                          write_reference_effect)
from frfsr_plugin.cli.option_checks import check_registered_types, check_required_options
from frfsr_plugin.metrics.evaluation import evaluate_images
from frfsr_plugin.utils.comparison import LABEL_HEIGHT, MIN_PANEL_SIZE

# --------------------------------------------------------------------------------------------------- progress lines


def test_progress_line_shows_bar_count_and_eta():
    assert format_seconds(75) == '1:15' and format_seconds(3725) == '1:02:05'
    line = progress_line('[3/8] train FRFSR stage 1', 50, 200, 30.0)
    assert line.startswith('[3/8] train FRFSR stage 1') and '[######..................]' in line
    assert line.endswith('   50/200 it  ETA 1:30')  # 0.6 s per iteration, 150 to go
    assert progress_line('x', 200, 200, 61.0).endswith('  200/200 it  1:01')  # done: elapsed time, no ETA
    assert progress_line('[4/8] test', 0, 0, 5.0).split() == ['[4/8]', 'test', '0:05']


FAKE_TRAINING = """
import sys
print('network printout ' * 20)
for it in (10, 20, 30, 40):
    print(f'[demo..][epoch:  0, iter:      {it}, lr:(1.0e-04,)] [eta: 0:00:10] l_pix: 0.1', flush=True)
sys.exit(int(sys.argv[1]))
"""


def test_step_output_goes_to_its_log_and_one_line_to_the_terminal(tmp_path):
    stream = io.StringIO()
    log = StepRunner(str(tmp_path / 'logs'), stream).run(
        '[1/2] train', [sys.executable, '-c', FAKE_TRAINING, '0'], str(tmp_path), total_iters=40)
    assert log == str(tmp_path / 'logs' / '1_2_train.log')
    assert 'network printout' in open(log).read() and open(log).read().count('iter:') == 4
    assert stream.getvalue().count('\n') == 1 and '[########################]    40/40 it' in stream.getvalue()


def test_a_failed_step_prints_the_end_of_its_log_and_raises(tmp_path):
    stream = io.StringIO()
    with pytest.raises(subprocess.CalledProcessError):
        StepRunner(str(tmp_path), stream).run(
            'broken', [sys.executable, '-c', FAKE_TRAINING, '3'], str(tmp_path), 40, log_name='broken_run')
    out = stream.getvalue()
    assert out.splitlines()[0].endswith('FAILED') and '   30/40 it' not in out.splitlines()[0]
    assert 'iter:      40' in out and f"(full log: {tmp_path / 'broken_run.log'})" in out


# ----------------------------------------------------------------------------------------------------------- data


def test_reference_origins_lie_on_the_lr_grid_of_the_input_crop():
    for start, desired in ((0, 7), (13, 2), (40, 95), (101, 0)):
        origin = grid_aligned_origin(start, desired, 60, 200)
        assert (origin - start) % LR_PIXEL == 0 and 0 <= origin <= 140 and abs(origin - desired) <= LR_PIXEL + 2
    photo = load_photo(TEST_PHOTOS[0])
    rng = np.random.default_rng(0)
    for _ in range(20):
        ref = displaced_crop(photo, 40, 52, (96, 128), 30, rng, max_zoom=1.3)
        assert 96 <= ref.shape[0] <= 125 and 128 <= ref.shape[1] <= 166  # 1 to 1.3 times the field of view
        left, top = cv2.minMaxLoc(cv2.matchTemplate(photo, ref, cv2.TM_SQDIFF))[2]
        assert np.array_equal(photo[top:top + ref.shape[0], left:left + ref.shape[1]], ref)
        assert (top - 40) % LR_PIXEL == 0 and (left - 52) % LR_PIXEL == 0


def test_test_groups_alternate_photos(demo_data):
    names = sorted(name for name in os.listdir(os.path.join(demo_data, 'test')) if name.endswith('_0.png'))
    photos = [load_photo(name) for name in TEST_PHOTOS]

    def source(gt_name):
        gt = cv2.imread(os.path.join(demo_data, 'test', gt_name))[..., ::-1]
        found = []
        for index, photo in enumerate(photos):
            left, top = cv2.minMaxLoc(cv2.matchTemplate(photo, gt, cv2.TM_SQDIFF))[2]
            if np.array_equal(photo[top:top + gt.shape[0], left:left + gt.shape[1]], gt):
                found.append(index)
        assert len(found) == 1
        return found[0]

    assert [source(name) for name in names] == [index % len(photos) for index in range(len(names))]


# --------------------------------------------------------------------------------------------------------- report


@pytest.fixture(scope='module')
def fake_results(demo_data, tmp_path_factory):
    """Results folders of two "models" in the layout of ``basicsr test``: model A's SR is the GT itself under the
    level-1 condition and bicubic elsewhere; model B's SR is bicubic everywhere."""
    test_root = os.path.join(demo_data, 'test')
    folders = {label: str(tmp_path_factory.mktemp(label)) for label in ('model A', 'model B')}
    for name, bicubic_sr, gt in bicubic_samples(test_root):
        for label, folder in folders.items():
            for condition in REPORT_CONDITIONS:
                path = sr_image_path(folder, TEST_SET, condition, name)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                exact = label == 'model A' and condition == 'level1'
                cv2.imwrite(path, tensor2img(gt if exact else bicubic_sr))
    return test_root, folders


def test_metrics_table_has_a_row_per_condition_and_scores_as_the_evaluation(fake_results):
    test_root, folders = fake_results
    table = metrics_table(test_root, folders, TEST_SET).splitlines()
    assert table[0] == '| reference | model A | model B |' and len(table) == 2 + len(REPORT_CONDITIONS) + 1
    scores = [evaluate_images(tensor2img(sr), tensor2img(gt)) for _, sr, gt in bicubic_samples(test_root)]
    bicubic_cell = f"{np.mean([s['psnr'] for s in scores]):.2f} / {np.mean([s['ssim'] for s in scores]):.4f}"
    rows = {row.split(' | ')[0][2:]: row.split(' | ')[1:] for row in table[2:]}
    assert rows['none: bicubic up-sampling'] == [bicubic_cell, '- |']
    assert rows[REPORT_CONDITIONS['level1']][0].startswith('inf / 1.0000')  # model A's SR is the GT
    for condition, label in REPORT_CONDITIONS.items():
        assert rows[label][1] == bicubic_cell + ' |'
        if condition != 'level1':
            assert rows[label][0] == bicubic_cell


def test_reference_effect_picture_has_six_labelled_panels(fake_results, tmp_path):
    test_root, folders = fake_results
    path = write_reference_effect(test_root, folders['model A'], TEST_SET, str(tmp_path / 'effect.png'))
    picture = cv2.imread(path)
    _, _, gt = next(bicubic_samples(test_root))
    scale = -(-MIN_PANEL_SIZE // min(gt.shape[-2:]))  # nearest-neighbour factor that makes the GT >= 256 px
    assert picture.shape[0] >= LABEL_HEIGHT + scale * gt.shape[-2]
    assert picture.shape[1] > 6 * scale * gt.shape[-1]  # six panels side by side, the references wider than the GT


# ----------------------------------------------------------------------------------------------------- end to end


def test_stage2_runs_differ_only_in_feature_reuse_and_pass_the_launcher_checks(tmp_path):
    stage1 = train_options(str(tmp_path), 200, 64, 4)
    reuse, ablation = (stage2_options(stage1, 'stage1.pth', 20, reuse=flag) for flag in (True, False))
    for opt in (stage1, reuse, ablation, demo.test_options(reuse, 'net_g.pth', str(tmp_path))):
        check_required_options(opt, 'train' if 'train' in opt else 'test', 'demo.yml')
        check_registered_types(opt, 'demo.yml')
    assert reuse['network_g']['type'] == 'FRFSRStage2Net' and reuse['network_stage1'] == stage1['network_g']
    assert reuse['path']['pretrain_network_stage1'] == 'stage1.pth'
    assert ablation['feature_reuse'] == {'enabled': False} and 'network_stage1' not in ablation
    assert ablation['network_g'] == stage1['network_g'] and ablation['train'] == reuse['train']
    assert reuse['train']['total_iter'] == 20 and reuse['train']['scheduler']['milestones'] == [16]
    assert {group['lr'] for group in stage1['train']['optim_g']['param_group_lrs']} == {5e-4, 5e-5, 5e-6}
    tests = demo.test_options(ablation, 'net_g.pth', str(tmp_path))['datasets']
    assert [dataset['name'] for dataset in tests.values()] == [f'{TEST_SET}_{c}' for c in REPORT_CONDITIONS]


@pytest.mark.integration
def test_demo_command_runs_its_steps_and_writes_the_report(tmp_path, capsys):
    """Stage 1 only (stage 2's options are checked above): the whole command costs 8 child processes otherwise."""
    workdir = tmp_path / 'demo'
    code = frfsr_cli.main(
        ['demo', '--workdir',
         str(workdir), '--iters', '2', '--stage2-iters', '0', '--encoder-iters', '2', '1'])
    out = capsys.readouterr().out
    assert code == 0
    steps = [line for line in out.splitlines() if line.startswith('[')]
    assert [step.split('  ')[0].rstrip() for step in steps] == [
        '[1/4] texture encoder: teacher', '[2/4] texture encoder: student', '[3/4] train FRFSR stage 1',
        '[4/4] test FRFSR stage 1'
    ]
    assert 'iter:' not in out and 'Network' not in out  # BasicSR's output stays in the logs
    report = open(workdir / 'results' / 'demo_metrics.md').read()
    assert '| reference | stage 1 |' in report and all(label in report for label in REPORT_CONDITIONS.values())
    assert 'Held-out matching accuracy of the encoder' in report and 'Wall time:' in out
    assert os.path.isfile(workdir / 'results' / 'reference_effect.png')
    assert 'iter:' in open(workdir / 'logs' / 'train_demo_frfsr_stage1.log').read()


@pytest.mark.parametrize('args, key', [(['--gt-size', '62'], '--gt-size'), (['--iters', '0'], '--iters'),
                                       (['--encoder-iters', '5', '0'], '--encoder-iters'),
                                       (['--stage2-iters', '-1'], '--stage2-iters')])
def test_demo_rejects_bad_lengths_in_one_line(args, key, tmp_path, capsys):
    assert frfsr_cli.main(['demo', '--workdir', str(tmp_path / 'demo')] + args) == 1
    err = capsys.readouterr().err
    assert err.startswith('frfsr demo: error: ') and key in err and err.count('\n') == 1
    assert not os.path.exists(tmp_path / 'demo')
