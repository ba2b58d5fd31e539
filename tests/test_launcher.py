"""The ``basicsr`` command end to end, as child processes on demo photos: train, test, resume, plugins, errors."""
import glob
import os
import subprocess
import sys
from os import path as osp

import cv2
import numpy as np
import pytest
import torch
from helpers import tiny_stage2_options, tiny_stage2_test_options, tiny_test_options, tiny_train_options, write_yaml

TOY_PLUGIN = '''
import torch
import torch.nn.functional as F
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn


@ARCH_REGISTRY.register()
class ToyUserRefSRNet(nn.Module):
    """A user's RefSR arch: bilinear x4 plus a conv over the upsampled LR and the aligned relu1_1 Ref feature."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3 + 64, 3, 3, 1, 1)

    def forward(self, lq, context):
        base = F.interpolate(lq, scale_factor=4, mode='bilinear', align_corners=False)
        return base + self.conv(torch.cat([base, context['warped_ref_feats'][0]], 1))
'''


def run_cli(module, args, cwd):
    return subprocess.run([sys.executable, '-m', module] + args, cwd=cwd, capture_output=True, text=True, timeout=600)


def basicsr(args, cwd):
    return run_cli('frfsr_plugin.cli.basicsr_cli', args, cwd)


def frfsr(args, cwd):
    return run_cli('frfsr_plugin.cli.frfsr_cli', args, cwd)


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp('launcher')


@pytest.fixture(scope='module')
def trained(workdir, demo_data):
    """`basicsr train` for 4 iterations (checkpoints at 2 and 4), then `--auto_resume` to 6."""
    opt_path = write_yaml(workdir / 'train.yml', tiny_train_options(demo_data, total_iter=4))
    first = basicsr(['train', '-opt', opt_path], workdir)
    resumed = basicsr(['train', '-opt', opt_path, '--auto_resume', '--force_yml', 'train:total_iter=6'], workdir)
    return workdir / 'experiments' / 'tiny_frfsr', first, resumed


@pytest.mark.integration
def test_train_writes_checkpoints_states_and_validates(trained):
    exp_dir, first, _ = trained
    assert first.returncode == 0, first.stderr[-3000:]
    for name in ('net_g_2.pth', 'net_g_4.pth'):
        assert osp.isfile(exp_dir / 'models' / name)
    assert sorted(os.listdir(exp_dir / 'training_states'))[:2] == ['2.state', '4.state']
    log = open(glob.glob(str(exp_dir / 'train_tiny_frfsr_*.log'))[0]).read()
    assert 'Validation CUFED5_demo' in log and '# psnr:' in log
    saved = torch.load(exp_dir / 'models' / 'net_g_4.pth', weights_only=True)['params']
    assert 'align_up_large.dcn.conv_offset_mask.weight' in saved
    assert not any(key.startswith(('vgg', 'feature_extraction')) for key in saved)  # frozen parts are not saved


@pytest.mark.integration
def test_auto_resume_on_cpu_continues_from_saved_iteration(trained):
    exp_dir, _, resumed = trained
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    logs = sorted(glob.glob(str(exp_dir / 'train_tiny_frfsr_*.log')))
    assert 'Resuming training from epoch' in open(logs[-1]).read() and 'iter: 4.' in open(logs[-1]).read()
    assert osp.isfile(exp_dir / 'models' / 'net_g_6.pth')


@pytest.mark.integration
def test_test_pipeline_writes_sr_images_and_metrics(trained, workdir, demo_data):
    exp_dir, _, _ = trained
    opt = tiny_test_options(demo_data, str(exp_dir / 'models' / 'net_g_latest.pth'))
    result = basicsr(['test', '-opt', write_yaml(workdir / 'test.yml', opt)], workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    images = sorted(os.listdir(workdir / 'results' / 'test_tiny_frfsr' / 'visualization' / 'CUFED5_demo'))
    assert images == ['000_0_SR.png', '001_0_SR.png']
    log = open(glob.glob(str(workdir / 'results' / 'test_tiny_frfsr' / 'test_*.log'))[0]).read()
    assert '# psnr:' in log


@pytest.mark.integration
def test_yaml_plugins_register_a_user_arch_and_local_rank_spellings(workdir, demo_data):
    (workdir / 'toy_user_plugin.py').write_text(TOY_PLUGIN)
    opt = tiny_train_options(demo_data, total_iter=2, name='toy_plugin_run')
    opt['plugins'] = ['toy_user_plugin']
    opt['network_g'] = {'type': 'ToyUserRefSRNet'}
    opt.pop('network_sife')
    opt['path']['ignore_resume_networks'] = ['network_extractor', 'network_map']
    result = basicsr(['train', '-opt', write_yaml(workdir / 'toy.yml', opt), '--local-rank=0'], workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert osp.isfile(workdir / 'experiments' / 'toy_plugin_run' / 'models' / 'net_g_2.pth')


@pytest.fixture(scope='module')
def trained_stage2(trained, workdir, demo_data):
    """`basicsr train` of a tiny stage 2 (Net1 = the stage-1 run above) for 2 iterations, then resumed to 4."""
    exp_dir, _, _ = trained
    opt = tiny_stage2_options(demo_data, 2, str(exp_dir / 'models' / 'net_g_latest.pth'))
    opt['logger']['use_tb_logger'] = True
    opt_path = write_yaml(workdir / 'stage2.yml', opt)
    first = basicsr(['train', '-opt', opt_path], workdir)
    resumed = basicsr(['train', '-opt', opt_path, '--auto_resume', '--force_yml', 'train:total_iter=4'], workdir)
    return workdir / 'experiments' / 'tiny_frf', first, resumed


@pytest.mark.integration
def test_stage2_trains_with_all_losses_writes_comparisons_and_resumes(trained_stage2, workdir):
    exp_dir, first, resumed = trained_stage2
    assert first.returncode == 0, first.stderr[-3000:]
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    logs = sorted(glob.glob(str(exp_dir / 'train_tiny_frf_*.log')))
    first_log, resumed_log = open(logs[0]).read(), open(logs[-1]).read()
    for key in ('l_g_pix', 'l_g_percep', 'l_g_gan', 'l_d_real', 'l_d_fake', 'l_d_gp'):
        assert key in first_log
    assert 'iter: 2.' in resumed_log and 'Resuming training' in resumed_log
    assert {'net_d_2.pth', 'net_d_4.pth', 'net_g_2.pth', 'net_g_4.pth'} <= set(os.listdir(exp_dir / 'models'))
    comparisons = exp_dir / 'visualization' / 'comparisons' / 'CUFED5_demo'
    assert sorted(os.listdir(comparisons))[:2] == ['000_0_2.png', '000_0_4.png']
    panel = cv2.imread(str(comparisons / '000_0_2.png'))
    # bicubic | stage 1 | stage 2 | Ref | GT, each 96x128 upscaled x3 (to >= 256 px) under a 30-pixel label
    assert panel.shape == (30 + 3 * 96, 5 * 3 * 128 + 4 * 6, 3)
    events = glob.glob(str(workdir / 'tb_logger' / 'tiny_frf' / 'events.*'))
    assert events


@pytest.mark.integration
def test_stage2_test_pipeline_reports_psnr_ssim_lpips_and_writes_comparisons(trained, trained_stage2, workdir,
                                                                             demo_data):
    exp_dir, _, _ = trained_stage2
    stage1_weights = str(trained[0] / 'models' / 'net_g_latest.pth')
    opt = tiny_stage2_test_options(demo_data, str(exp_dir / 'models' / 'net_g_latest.pth'), stage1_weights)
    opt['val']['metrics']['lpips'] = {'type': 'calculate_lpips', 'backbone_weights': False, 'better': 'lower'}
    result = basicsr(['test', '-opt', write_yaml(workdir / 'test_stage2.yml', opt)], workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    results = workdir / 'results' / 'test_tiny_frf'
    log = open(glob.glob(str(results / 'test_*.log'))[0]).read()
    assert '# psnr:' in log and '# ssim:' in log and '# lpips:' in log
    assert sorted(os.listdir(results / 'visualization' / 'CUFED5_demo')) == ['000_0_SR.png', '001_0_SR.png']
    assert sorted(os.listdir(results / 'visualization' / 'comparisons' /
                             'CUFED5_demo')) == ['000_0_test_tiny_frf.png', '001_0_test_tiny_frf.png']


@pytest.mark.integration
def test_stage2_without_feature_reuse_trains_with_all_losses_and_without_net1(trained, workdir, demo_data):
    """The ablation ``feature_reuse: {enabled: false}``: Net2 (plain FRFSRNet from the stage-1 checkpoint) is trained
    with all losses and Net1 is never built; an arch that needs the reused feature stops with one line."""
    exp_dir, _, _ = trained
    opt = tiny_stage2_options(demo_data, 2, str(exp_dir / 'models' / 'net_g_latest.pth'), 'tiny_no_reuse')
    opt.update(feature_reuse={'enabled': False}, network_g=opt.pop('network_stage1'))
    opt['path'].pop('pretrain_network_stage1')
    opt['path']['ignore_resume_networks'].remove('network_stage1')
    result = basicsr(['train', '-opt', write_yaml(workdir / 'no_reuse.yml', opt)], workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    no_reuse_dir = workdir / 'experiments' / 'tiny_no_reuse'
    log = open(glob.glob(str(no_reuse_dir / 'train_tiny_no_reuse_*.log'))[0]).read()
    for key in ('l_g_pix', 'l_g_percep', 'l_g_gan', 'l_d_real', 'l_d_fake', 'l_d_gp'):
        assert key in log
    assert 'FRFSRNet' in log and 'FRFSRStage2Net' not in log  # no Net1, and net_g is the stage-1 arch
    panel = cv2.imread(str(no_reuse_dir / 'visualization' / 'comparisons' / 'CUFED5_demo' / '000_0_2.png'))
    assert panel.shape == (30 + 3 * 96, 4 * 3 * 128 + 3 * 6, 3)  # bicubic | SR | Ref | GT: no stage-1 panel

    opt.update(name='tiny_no_reuse_stage2_arch', network_g=tiny_stage2_options(demo_data, 2, '')['network_g'])
    result = basicsr(['train', '-opt', write_yaml(workdir / 'no_reuse_stage2_arch.yml', opt)], workdir)
    assert result.returncode == 1 and 'Traceback' not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(
        'basicsr train: error: network_g: FRFSRStage2Net needs the reused feature of Net1, but there is none '
        '(feature_reuse.enabled: false')


@pytest.mark.integration
def test_frf_wraps_a_user_arch_registered_through_plugins(workdir, demo_data):
    (workdir / 'toy_user_plugin.py').write_text(TOY_PLUGIN)
    toy_stage1 = tiny_train_options(demo_data, total_iter=1, name='toy_stage1')
    toy_stage1.update(plugins=['toy_user_plugin'], network_g={'type': 'ToyUserRefSRNet'})
    toy_stage1.pop('network_sife')
    toy_stage1['path']['ignore_resume_networks'] = ['network_extractor', 'network_map']
    assert basicsr(['train', '-opt', write_yaml(workdir / 'toy1.yml', toy_stage1)], workdir).returncode == 0
    weights = str(workdir / 'experiments' / 'toy_stage1' / 'models' / 'net_g_latest.pth')
    opt = tiny_stage2_options(demo_data, 2, weights, name='toy_frf')
    opt.update(
        plugins=['toy_user_plugin'],
        network_stage1={'type': 'ToyUserRefSRNet'},
        feature_reuse={
            'source': 'conv',
            'port': 'input'
        },
        network_g={
            'type': 'FeatureReuseNet',
            'base': {
                'type': 'ToyUserRefSRNet'
            },
            'reuse_channels': 67,
            'fusion_targets': {
                'conv': 67
            },
            'pretrained_base': weights
        })
    opt.pop('network_sife')
    opt['path'].update(
        pretrain_network_g=None, ignore_resume_networks=['network_extractor', 'network_map', 'network_stage1'])
    result = basicsr(['train', '-opt', write_yaml(workdir / 'toy_frf.yml', opt)], workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    saved = torch.load(workdir / 'experiments' / 'toy_frf' / 'models' / 'net_g_2.pth', weights_only=True)['params']
    assert sorted(saved) == ['base.conv.bias', 'base.conv.weight', 'fusions.conv.conv.bias', 'fusions.conv.conv.weight']


@pytest.mark.integration
@pytest.mark.parametrize('case, message', [
    ('missing_yaml', "option file '{root}/nope.yml' not found"),
    ('missing_weights', "weights file '{root}/missing_vgg19.pth' not found. It should contain torchvision's VGG19"),
    ('bad_plugin', "plugin module 'no_such_plugin_module' could not be imported"),
    ('missing_data', "option 'dataroot_gt': folder '{root}/no_such_folder' does not exist"),
])
def test_user_errors_end_with_one_line_and_exit_code_1(workdir, case, message, demo_data):
    opt = tiny_train_options(demo_data, total_iter=2, name=f'error_{case}')
    if case == 'missing_weights':
        opt['network_map']['pretrained'] = str(workdir / 'missing_vgg19.pth')
    if case == 'bad_plugin':
        opt['plugins'] = ['no_such_plugin_module']
    if case == 'missing_data':
        opt['datasets']['train']['dataroot_gt'] = str(workdir / 'no_such_folder')
    opt_path = str(workdir / 'nope.yml') if case == 'missing_yaml' else write_yaml(workdir / f'{case}.yml', opt)
    result = basicsr(['train', '-opt', opt_path], workdir)
    assert result.returncode == 1
    assert message.format(root=workdir) in result.stderr
    assert 'Traceback' not in result.stderr


@pytest.mark.integration
def test_unknown_command_prints_usage(workdir):
    result = basicsr(['fit'], workdir)
    assert result.returncode == 2 and 'usage: basicsr {train,test}' in result.stderr


def write_photo(path, rgb):
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return str(path)


@pytest.mark.integration
def test_frfsr_infer_on_photos_of_other_sizes_with_metrics_compare_and_folders(trained_stage2, workdir):
    """Two-stage inference from the YAML copy that `basicsr train` left: LR 31x23 (training used 16x16), Ref 150x90."""
    from skimage import data as skimage_data
    exp_dir, _, _ = trained_stage2
    photo = skimage_data.coffee()
    gt = photo[100:192, 200:324]
    lr = cv2.resize(gt, (31, 23), interpolation=cv2.INTER_AREA)
    inputs = workdir / 'infer_inputs'
    for folder in ('lr', 'ref', 'gt'):
        (inputs / folder).mkdir(parents=True, exist_ok=True)
    for name, offset in (('a.png', 0), ('b.png', 30)):
        write_photo(inputs / 'lr' / name, lr)
        write_photo(inputs / 'ref' / name, photo[60 + offset:150 + offset, 150:300])
        write_photo(inputs / 'gt' / name, gt)
    common = [
        'infer', '--opt',
        glob.glob(str(exp_dir / '*.yml'))[0], '--weights',
        str(exp_dir / 'models' / 'net_g_latest.pth')
    ]
    single = frfsr(
        common + [
            '--lr',
            str(inputs / 'lr' / 'a.png'), '--ref',
            str(inputs / 'ref' / 'a.png'), '-o',
            str(workdir / 'sr.png'), '--gt',
            str(inputs / 'gt' / 'a.png'), '--compare'
        ], workdir)
    assert single.returncode == 0, single.stderr[-3000:]
    assert cv2.imread(str(workdir / 'sr.png')).shape == (92, 124, 3)
    # bicubic | SR | Ref | GT, upscaled x3 so that the smallest side (the Ref's 90) reaches 256 px
    assert cv2.imread(str(workdir / 'sr_compare.png')).shape[1] == 3 * (3 * 124 + 150) + 3 * 6
    assert 'a.png: psnr ' in single.stdout and ', ssim ' in single.stdout
    folder = frfsr(
        common + [
            '--lr',
            str(inputs / 'lr'), '--ref',
            str(inputs / 'ref'), '-o',
            str(workdir / 'sr_dir'), '--gt',
            str(inputs / 'gt')
        ], workdir)
    assert folder.returncode == 0, folder.stderr[-3000:]
    assert sorted(os.listdir(workdir / 'sr_dir')) == ['a.png', 'b.png'] and 'mean: psnr' in folder.stdout
    tiny = frfsr(
        common + [
            '--lr',
            write_photo(workdir / 'tiny_lr.png', lr[:12]), '--ref',
            str(inputs / 'ref' / 'a.png'), '-o',
            str(workdir / 'tiny_sr.png')
        ], workdir)
    assert tiny.returncode == 1 and 'the LR image is 31x12; FRFSR needs at least 15x15' in tiny.stderr
    assert 'Traceback' not in tiny.stderr
    two_refs = frfsr(
        common + [
            '--lr',
            str(inputs / 'lr' / 'a.png'), '--ref',
            str(inputs / 'ref' / 'a.png'), '--ref',
            write_photo(workdir / 'ref_small.png', photo[:45, :60]), '-o',
            str(workdir / 'sr_two_refs.png')
        ], workdir)
    assert two_refs.returncode == 0, two_refs.stderr[-3000:]
    assert cv2.imread(str(workdir / 'sr_two_refs.png')).shape == (92, 124, 3)


def test_stitched_references_share_the_tallest_height():
    from frfsr_plugin.restoration.inference import stitch_references
    refs = [np.zeros((90, 150, 3), np.uint8), np.full((45, 60, 3), 200, np.uint8)]
    stitched = stitch_references(refs)
    assert stitched.shape == (90, 150 + 120, 3) and (stitched[:, 150:] == 200).all()


@pytest.mark.integration
def test_unknown_type_in_yaml_is_named_with_its_key(workdir, demo_data):
    opt = tiny_train_options(demo_data, total_iter=2, name='error_unknown_type')
    opt['network_g']['type'] = 'FRFSRNett'
    result = basicsr(['train', '-opt', write_yaml(workdir / 'unknown_type.yml', opt)], workdir)
    assert result.returncode == 1 and 'Traceback' not in result.stderr
    assert "network_g.type: unknown type 'FRFSRNett'; registered: " in result.stderr
    assert 'FRFSRNet, FRFSRSIFENet' in result.stderr
