"""tools/evaluate_robustness.py and the ``ref_from_other_sample`` option of RefSRTestDataset, on the demo test set."""
import importlib.util
import math
import os
import re
import subprocess
import sys
from os import path as osp

import numpy as np
import pytest
import torch
from basicsr.archs import build_network
from basicsr.data import build_dataset
from basicsr.metrics import calculate_psnr, calculate_ssim
from basicsr.utils import tensor2img
from helpers import tiny_networks, tiny_stage2_test_options, tiny_test_options, write_yaml

from frfsr_plugin.cli.demo_data import build_cufed5_like_set
from frfsr_plugin.data.reference_conditions import REFERENCE_CONDITIONS, SHUFFLE_GRIDS, reference_condition_options
from frfsr_plugin.data.refsr_test_dataset import RefSRTestDataset
from frfsr_plugin.data.transforms import make_lr_pair, mod_crop, read_image_rgb

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOOL = osp.join(ROOT, 'tools', 'evaluate_robustness.py')
FROZEN = ('network_extractor', 'network_map', 'network_sife')
TEST_GT_SIZE = (64, 64)  # LR 16 x 16, the smallest multiple of 4 above FRFSR's minimum of 15


def load_tool():
    spec = importlib.util.spec_from_file_location('evaluate_robustness', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


robustness = load_tool()


def save_params(net, path):
    torch.save({'params': net.state_dict()}, path)
    return str(path)


@pytest.fixture(scope='module', autouse=True)
def single_thread():
    """One intra-op thread: on these tiny tensors a second thread costs more than it gains (4x the CPU time on a busy
    2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='module')
def stage1(tmp_path_factory, tiny_checkpoints):
    """A small CUFED5-like demo set, the random tiny stage-1 checkpoint and a test YAML whose frozen parts load local
    weight files (so that a direct computation can rebuild exactly the same networks)."""
    root = tmp_path_factory.mktemp('robustness')
    build_cufed5_like_set(str(root / 'test'), gt_size=TEST_GT_SIZE, groups_per_photo=1)  # 2 groups, small and fast
    torch.manual_seed(0)
    weights = tiny_checkpoints['stage1']
    opt = tiny_test_options(str(root), weights)
    for key in FROZEN:
        net = build_network(opt[key])
        opt[key]['pretrained'] = save_params(net.vgg if key == 'network_map' else net, root / f'{key}.pth')
    yaml_path = write_yaml(root / 'test_stage1.yml', opt)
    return dict(root=root, dataroot=str(root / 'test'), weights=weights, opt=opt, yaml=yaml_path)


def run_tool(*args):
    env = dict(os.environ, OMP_NUM_THREADS='1')  # see single_thread
    return subprocess.run([sys.executable, TOOL, *args], capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)


def parse_output(stdout):
    """Table rows (condition -> (psnr, ssim) as printed) and the ``name: value`` figures of the tool's stdout."""
    rows, figures = {}, {}
    for line in stdout.splitlines():
        cells = [cell.strip() for cell in line.strip('|').split('|')]
        if line.startswith('|') and cells[0] in REFERENCE_CONDITIONS:
            rows[cells[0]] = (float(cells[2]), float(cells[3]))
        elif ': ' in line and not line.startswith('|'):
            name, value = line.split(': ')
            figures[name] = float(value)
    return rows, figures


def direct_scores(opt, dataroot, ref_level, num_images=None):
    """Mean Y-PSNR/SSIM (crop 4) of the networks of ``opt``, run by hand on the first RefSRTestDataset samples."""
    nets = {key: build_network(opt[key]).eval() for key in FROZEN + ('network_g', )}
    nets['network_g'].load_state_dict(torch.load(opt['path']['pretrain_network_g'])['params'])
    scores = []
    dataset = RefSRTestDataset({'dataroot_gt': dataroot, 'ref_level': ref_level})
    for sample in (dataset[index] for index in range(num_images or len(dataset))):
        lq, lq_up, ref = (sample[key].unsqueeze(0) for key in ('lq', 'lq_up', 'ref'))
        with torch.no_grad():
            context = nets['network_map'](*nets['network_extractor'](lq_up, ref), ref)
            context['sife_feat'] = nets['network_sife'](lq)
            sr = nets['network_g'](lq, context)[..., :sample['gt'].shape[-2], :sample['gt'].shape[-1]]
        sr_img, gt_img = tensor2img(sr), tensor2img(sample['gt'])
        scores.append([
            calculate_psnr(sr_img, gt_img, 4, test_y_channel=True),
            calculate_ssim(sr_img, gt_img, 4, test_y_channel=True)
        ])
    return np.mean(scores, axis=0)


def bicubic_scores(dataroot):
    """Mean Y-PSNR/SSIM (crop 4) of PIL-bicubic x1/4 then x4 of each mod-cropped GT, straight from the files."""
    scores = []
    for group in ('000', '001'):
        gt = mod_crop(read_image_rgb(osp.join(dataroot, f'{group}_0.png')), 4)
        _, bicubic = make_lr_pair(gt, 4)
        scores.append([
            f(bicubic[..., ::-1], gt[..., ::-1], 4, test_y_channel=True) for f in (calculate_psnr, calculate_ssim)
        ])  # BGR, as tensor2img gives
    return np.mean(scores, axis=0)


@pytest.mark.integration
def test_table_has_every_condition_and_matches_direct_computation(stage1, tmp_path):
    table_path = tmp_path / 'table.md'
    result = run_tool('-opt', stage1['yaml'], '--weights', stage1['weights'], '--dataroot', stage1['dataroot'],
                      '--output', str(table_path))
    assert result.returncode == 0, result.stderr[-3000:]
    rows, figures = parse_output(result.stdout)
    assert list(rows) == list(REFERENCE_CONDITIONS)
    assert figures['images'] == 2
    for condition, (psnr, ssim) in rows.items():
        values = figures[f'{condition}_psnr'], figures[f'{condition}_ssim']
        assert all(map(math.isfinite, values)) and 10 < values[0] < 60 and 0 < values[1] <= 1
        assert (psnr, ssim) == (round(values[0], 2), round(values[1], 4))
    np.testing.assert_allclose([figures['level1_psnr'], figures['level1_ssim']],
                               direct_scores(stage1['opt'], stage1['dataroot'], 1),
                               atol=2e-4)
    np.testing.assert_allclose([figures['bicubic_psnr'], figures['bicubic_ssim']],
                               bicubic_scores(stage1['dataroot']),
                               atol=2e-4)
    assert len({figures[f'{condition}_psnr'] for condition in rows}) > 2  # the conditions change the output
    written = table_path.read_text()
    assert written.startswith('# Robustness to the reference') and result.stdout.split('\n\n')[0] in written


def sample_of(condition, dataroot, index, **options):
    return build_dataset(reference_condition_options(condition, dataroot, **options))[index]


def test_conditions_change_only_the_reference(stage1):
    dataroot = stage1['dataroot']
    level1 = sample_of('level1', dataroot, 0)
    assert level1['ref_path'] == osp.join(dataroot, '000_1.png')
    levels = [sample_of(f'level{level}', dataroot, 0) for level in range(2, 6)]
    assert [sample['ref_path'] for sample in levels] == [osp.join(dataroot, f'000_{k}.png') for k in range(2, 6)]

    lr = sample_of('lr', dataroot, 0)
    assert torch.equal(lr['ref'], lr['lq_up']) and torch.equal(lr['gt'], level1['gt'])
    assert sample_of('bicubic', dataroot, 0)['ref_path'] == lr['ref_path']

    shuffled = [sample_of(name, dataroot, 0, shuffle_seed=5) for name in SHUFFLE_GRIDS]
    for sample in shuffled:
        assert sample['ref_path'] == level1['ref_path'] and torch.equal(sample['lq'], level1['lq'])
        assert sample['ref'].shape == level1['ref'].shape and not torch.equal(sample['ref'], level1['ref'])
    assert not torch.equal(shuffled[1]['ref'], shuffled[2]['ref'])

    irrelevant = sample_of('irrelevant', dataroot, 0, irrelevant_offset=1)
    other_ref_path = sample_of('level1', dataroot, 1)['ref_path']
    assert irrelevant['ref_path'] == other_ref_path and torch.equal(irrelevant['gt'], level1['gt'])
    other_ref = mod_crop(read_image_rgb(other_ref_path), 4)
    ref = np.round(irrelevant['ref'].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    np.testing.assert_array_equal(ref[:other_ref.shape[0], :other_ref.shape[1]], other_ref)


def test_ref_from_other_sample_option(stage1, tmp_path):
    dataroot = stage1['dataroot']
    own = RefSRTestDataset({'dataroot_gt': dataroot, 'ref_level': 3})
    for offset in (1, -1, 3):
        borrowed = RefSRTestDataset({'dataroot_gt': dataroot, 'ref_level': 3, 'ref_from_other_sample': offset})
        assert borrowed.pairs == [(own.pairs[0][0], own.pairs[1][1]), (own.pairs[1][0], own.pairs[0][1])]
    pair_list = tmp_path / 'pairs.txt'
    pair_list.write_text('000_0.png 000_2.png\n001_0.png 001_4.png\n000_0.png 001_5.png\n')
    pairs = RefSRTestDataset(
        dict(dataroot_gt=dataroot, mode='pairs', pair_list=str(pair_list), ref_from_other_sample=2)).pairs
    names = [(osp.basename(gt), osp.basename(ref)) for gt, ref in pairs]
    assert names == [('000_0.png', '001_5.png'), ('001_0.png', '000_2.png'), ('000_0.png', '001_4.png')]
    assert RefSRTestDataset({'dataroot_gt': dataroot, 'ref_from_other_sample': 0}).pairs == \
        RefSRTestDataset({'dataroot_gt': dataroot}).pairs
    bad_offsets = {2: 'multiple of the number of samples', 1.5: 'integer', '1': 'integer', True: 'integer'}
    for bad, message in bad_offsets.items():
        with pytest.raises(ValueError, match=f'ref_from_other_sample.*{message}'):
            RefSRTestDataset({'dataroot_gt': dataroot, 'ref_from_other_sample': bad})
    with pytest.raises(ValueError, match="ref_from_other_sample.*'ref_level: lr'"):
        RefSRTestDataset({'dataroot_gt': dataroot, 'ref_level': 'lr', 'ref_from_other_sample': 1})


@pytest.mark.integration
def test_two_stage_model(stage1, tmp_path, capsys):
    """A FeatureReuseModel YAML whose Net2 is Net1 plus a zero fusion conv: its SR, and so its row, equal stage 1's."""
    net1 = tiny_networks()['network_g']
    net2_opt = dict(
        type='FeatureReuseNet', base=net1, fusion_targets={'tail': net1['num_feat']}, reuse_channels=net1['num_feat'])
    net2 = build_network(dict(net2_opt, pretrained_base=stage1['weights']))
    opt = tiny_stage2_test_options(str(stage1['root']), save_params(net2, tmp_path / 'net2.pth'), stage1['weights'])
    opt.update({key: stage1['opt'][key] for key in FROZEN}, network_g=net2_opt)
    assert opt['model_type'] == 'FeatureReuseModel' and 'network_stage1' in opt
    yaml_path = write_yaml(tmp_path / 'stage2.yml', opt)
    assert robustness.main([
        '-opt', yaml_path, '--weights', opt['path']['pretrain_network_g'], '--dataroot', stage1['dataroot'],
        '--conditions', 'level1', 'bicubic', '--max-images', '1'
    ]) == 0
    rows, figures = parse_output(capsys.readouterr().out)
    assert list(rows) == ['level1', 'bicubic'] and figures['images'] == 1
    np.testing.assert_allclose([figures['level1_psnr'], figures['level1_ssim']],
                               direct_scores(stage1['opt'], stage1['dataroot'], 1, num_images=1),
                               atol=2e-4)


@pytest.mark.integration
def test_missing_weights_is_one_line_and_exit_1(stage1, tmp_path):
    missing = str(tmp_path / 'none.pth')
    result = run_tool('-opt', stage1['yaml'], '--weights', missing, '--dataroot', stage1['dataroot'], '--conditions',
                      'lr')
    assert result.returncode == 1 and result.stdout == ''
    assert result.stderr.strip().splitlines() == [
        f"evaluate_robustness: error: weights file '{missing}' not found (a net_g_*.pth written by basicsr train)."
    ]


@pytest.mark.parametrize('option, values, message', [
    ('--conditions', ['level1', 'level9', 'blurry'], 'unknown condition.*level9, blurry; choose from: level1'),
    ('--dataroot', ['nowhere'], "--dataroot: folder 'nowhere' does not exist"),
    ('-opt', ['nowhere.yml'], "option file 'nowhere.yml' not found"),
    ('--max-images', ['0'], '--max-images must be at least 1'),
    ('--output', ['nowhere/table.md'], "--output: the folder of 'nowhere/table.md' does not exist"),
    ('--irrelevant-offset', ['2'], 'ref_from_other_sample.*multiple of the number of samples'),
])
def test_user_errors(stage1, capsys, option, values, message):
    options = {'-opt': [stage1['yaml']], '--weights': [stage1['weights']], '--dataroot': [stage1['dataroot']]}
    options[option] = values
    assert robustness.main([word for key, words in options.items() for word in [key, *words]]) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert captured.out == '' and len(lines) == 1 and lines[0].startswith('evaluate_robustness: error: ')
    assert re.search(message, lines[0])
