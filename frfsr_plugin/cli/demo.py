"""``frfsr demo``: the whole two-stage flow on photos bundled with scikit-image, through the ``basicsr`` launcher.

It writes, under the working folder: ``data/`` (a CUFED-like train set and a CUFED5-like test set), ``options/``
(the YAMLs it runs), ``experiments/`` and ``results/`` (BasicSR's outputs, comparison images included) and
``results/demo_metrics.md``.
It first trains the contrastive texture encoder in miniature (teacher, then student, from random weights) and uses
the student as the frozen encoder of stages 1 and 2. VGG19 and SIFE stay randomly initialised because no pretrained
weights can be downloaded here; put real weights into the YAMLs for meaningful results.
"""
import copy
import os
import subprocess
import sys
from os import path as osp

import numpy as np
import torch.nn.functional as F
import yaml
from PIL import Image

from frfsr_plugin.cli.demo_data import build_cufed5_like_set, build_train_set
from frfsr_plugin.cli.demo_encoder import latest_weights, student_options, teacher_options
from frfsr_plugin.metrics.evaluation import PAPER_METRICS, evaluate_images
from frfsr_plugin.restoration.pipeline import REFERENCE_NETWORKS, random_reference_network_options

STAGE1_NAME = 'demo_frfsr_stage1'
STAGE2_NAME = 'demo_frfsr_stage2'
TEST_SET_NAME = 'CUFED5_demo'
FROZEN_NETWORKS = list(REFERENCE_NETWORKS)
# yapf: disable


def demo_networks():
    """Small networks (half of FRFSR's width, 2 ResBlocks per TAAM) that train in minutes on 2 CPU cores."""
    return {
        **random_reference_network_options(network_sife={'num_feat': 32, 'num_block': 2, 'num_grow_ch': 16}),
        'network_g': {'type': 'FRFSRNet', 'num_feat': 32, 'num_res_blocks': 2, 'num_ddf_blocks': 1,
                      'sife_channels': 32, 'dcn_backend': 'pytorch'},
    }


def test_dataset_options(data_root):
    return {'name': TEST_SET_NAME, 'type': 'RefSRTestDataset', 'mode': 'cufed5', 'dataroot_gt': data_root,
            'ref_level': 1}


def train_options(data_root, total_iter, gt_size, batch_size):
    """Stage-1 training on CPU with validation on the CUFED5-like set every quarter of the run."""
    return {
        'name': STAGE1_NAME, 'model_type': 'FRFSRModel', 'scale': 4, 'num_gpu': 0, 'manual_seed': 10,
        'datasets': {
            'train': {'name': 'CUFED_demo', 'type': 'RefCUFEDDataset',
                      'dataroot_gt': osp.join(data_root, 'train', 'input'),
                      'dataroot_ref': osp.join(data_root, 'train', 'ref'), 'gt_size': gt_size, 'use_flip': True,
                      'use_rot': True, 'ref_shuffle_prob': 0.5, 'ref_shuffle_grid': 4, 'num_worker_per_gpu': 0,
                      'batch_size_per_gpu': batch_size, 'dataset_enlarge_ratio': 1},
            'val': test_dataset_options(osp.join(data_root, 'test')),
        },
        **demo_networks(),
        'path': {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None,
                 'ignore_resume_networks': list(FROZEN_NETWORKS)},
        'train': {
            'ema_decay': 0,
            'optim_g': {'type': 'Adam', 'lr': 2e-3, 'betas': [0.9, 0.999]},
            'scheduler': {'type': 'MultiStepLR', 'milestones': [int(total_iter * 0.8)], 'gamma': 0.5},
            'total_iter': total_iter, 'warmup_iter': -1,
            'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0, 'reduction': 'mean'},
        },
        'val': {'val_freq': max(total_iter // 4, 1), 'save_img': False, 'metrics': PAPER_METRICS},
        'logger': {'print_freq': max(total_iter // 20, 1), 'save_checkpoint_freq': max(total_iter // 2, 1),
                   'use_tb_logger': True},
    }


def stage2_options(stage1_opt, stage1_weights, total_iter, name=STAGE2_NAME):
    """Stage-2 (feature reuse) options derived from stage-1 options: Net1 = the stage-1 generator, loaded from
    ``stage1_weights``; Net2 = its FRFSRStage2Net counterpart initialised from the same weights, trained with
    L1 + perceptual + WGAN-GP (random VGG19 here, as no weights can be downloaded)."""
    opt = copy.deepcopy(stage1_opt)
    net1 = opt['network_g']
    opt.update(name=name, model_type='FeatureReuseModel', network_stage1=net1,
               network_g=dict(net1, type='FRFSRStage2Net', reuse_channels=net1['num_feat']),
               network_d={'type': 'FRFSRDiscriminator', 'num_feat': 8},
               feature_reuse={'source': 'aggregate_up_large', 'port': 'output'})
    opt['path'].update(pretrain_network_stage1=stage1_weights, pretrain_network_g=stage1_weights,
                       strict_load_g=False, ignore_resume_networks=FROZEN_NETWORKS + ['network_stage1'])
    opt['train'].update(
        optim_g=dict(opt['train']['optim_g'], lr=opt['train']['optim_g']['lr'] / 4),
        optim_d={'type': 'Adam', 'lr': 1e-4, 'betas': [0.9, 0.999]},
        scheduler=dict(opt['train']['scheduler'], milestones=[int(total_iter * 0.8)]),
        total_iter=total_iter,
        perceptual_opt={'type': 'FRFSRPerceptualLoss', 'layer_weights': {'relu5_1': 1.0}, 'pretrained': False,
                        'perceptual_weight': 1e-4, 'criterion': 'fro'},
        gan_opt={'type': 'GANLoss', 'gan_type': 'wgan', 'loss_weight': 1e-6},
        gp_opt={'type': 'WGANGradientPenaltyLoss', 'loss_weight': 10.0})
    opt['val']['val_freq'] = max(total_iter // 2, 1)
    opt['logger'].update(print_freq=max(total_iter // 10, 1), save_checkpoint_freq=max(total_iter // 2, 1))
    return opt


def test_options(train_opt, weights):
    """Options of ``basicsr test`` for the generator trained with ``train_opt``, loaded from ``weights``."""
    kept = ('model_type', 'scale', 'num_gpu', 'feature_reuse')
    opt = {key: copy.deepcopy(value) for key, value in train_opt.items()
           if key in kept or (key.startswith('network_') and key != 'network_d')}
    path = {key: value for key, value in train_opt['path'].items() if key == 'pretrain_network_stage1'}
    opt.update(name=f"test_{train_opt['name']}", manual_seed=10,
               datasets={'test_1': copy.deepcopy(train_opt['datasets']['val'])},
               path=dict(path, pretrain_network_g=weights, strict_load_g=True, param_key_g='params'),
               val={'save_img': True, 'suffix': 'SR', 'metrics': PAPER_METRICS})
    return opt
# yapf: enable


def write_yaml(path, opt):
    with open(path, 'w', encoding='utf-8') as file:
        yaml.safe_dump(opt, file, sort_keys=False)
    return path


def run_basicsr(command, opt_path, workdir):
    """Run ``basicsr <command> -opt <opt_path>`` in ``workdir`` as a child process; raise if it fails."""
    print(f'$ basicsr {command} -opt {opt_path}', flush=True)
    subprocess.run([sys.executable, '-m', 'frfsr_plugin.cli.basicsr_cli', command, '-opt', opt_path],
                   cwd=workdir,
                   check=True)


def upsample_baselines(sample):
    """Bilinear (the generator's own base, i.e. FRFSR before training) and PIL-bicubic x4 of a test sample's LR.

    Args:
        sample (dict): A :class:`RefSRTestDataset` sample.

    Returns:
        tuple[ndarray, ndarray]: BGR uint8 images cropped to the GT size.
    """
    from basicsr.utils import tensor2img
    height, width = sample['gt'].shape[-2:]
    lq = sample['lq'].unsqueeze(0)
    bilinear = tensor2img(F.interpolate(lq, scale_factor=4, mode='bilinear', align_corners=False))[:height, :width]
    lq_rgb = tensor2img(lq, rgb2bgr=False)
    bicubic = np.asarray(Image.fromarray(lq_rgb).resize((lq_rgb.shape[1] * 4, lq_rgb.shape[0] * 4), Image.BICUBIC))
    return bilinear, np.ascontiguousarray(bicubic[:height, :width, ::-1])


def metrics_table(data_root, sr_dirs):
    """Per-image Y-PSNR/SSIM (crop 4) of bilinear and bicubic upsampling and of SR results, in Markdown.

    Args:
        data_root (str): The CUFED5-like test folder.
        sr_dirs (dict[str, str]): Method name -> folder of ``<image>_SR.png`` results.

    Returns:
        str: The table.
    """
    from basicsr.utils import tensor2img

    from frfsr_plugin.data.refsr_test_dataset import RefSRTestDataset
    dataset = RefSRTestDataset({**test_dataset_options(data_root), 'phase': 'test', 'scale': 4})
    methods = ['bilinear (untrained FRFSR)', 'bicubic'] + list(sr_dirs)
    rows = ['| image | ' + ' | '.join(f'{m} PSNR / SSIM' for m in methods) + ' |', '|---' * (len(methods) + 1) + '|']
    totals = np.zeros((len(methods), 2))
    for sample in dataset:
        gt = tensor2img(sample['gt'])
        name = osp.splitext(osp.basename(sample['lq_path']))[0]
        results = [
            np.asarray(Image.open(osp.join(d, f'{name}_SR.png')).convert('RGB'))[..., ::-1] for d in sr_dirs.values()
        ]
        values = np.array([list(evaluate_images(img, gt).values()) for img in (*upsample_baselines(sample), *results)])
        totals += values
        rows.append(f'| {name} | ' + ' | '.join(f'{p:.2f} / {s:.4f}' for p, s in values) + ' |')
    rows.append('| **mean** | ' + ' | '.join(f'{p:.2f} / {s:.4f}' for p, s in totals / len(dataset)) + ' |')
    return '\n'.join(rows) + '\n'


def train_and_test(train_opt, options_dir, workdir):
    """``basicsr train`` then ``basicsr test`` of one stage; returns (latest weights, folder of SR images)."""
    weights = osp.join(workdir, 'experiments', train_opt['name'], 'models', 'net_g_latest.pth')
    run_basicsr('train', write_yaml(osp.join(options_dir, f"{train_opt['name']}.yml"), train_opt), workdir)
    test_opt = test_options(train_opt, weights)
    run_basicsr('test', write_yaml(osp.join(options_dir, f"{test_opt['name']}.yml"), test_opt), workdir)
    return weights, osp.join(workdir, 'results', test_opt['name'], 'visualization', TEST_SET_NAME)


def train_texture_encoder(data_root, options_dir, workdir):
    """The texture-encoder chain in miniature: teacher, then student (``cli/demo_encoder.py``).

    Returns:
        str: The student's checkpoint, for ``network_extractor.pretrained``.
    """
    teacher_opt = teacher_options(data_root)
    run_basicsr('train', write_yaml(osp.join(options_dir, f"{teacher_opt['name']}.yml"), teacher_opt), workdir)
    student_opt = student_options(teacher_opt, latest_weights(workdir, teacher_opt))
    run_basicsr('train', write_yaml(osp.join(options_dir, f"{student_opt['name']}.yml"), student_opt), workdir)
    return latest_weights(workdir, student_opt)


def run_demo(workdir='frfsr_demo',
             iters=150,
             stage2_iters=40,
             gt_size=64,
             batch_size=4,
             crops_per_photo=16,
             train_encoder=True):
    """Build demo data, train the texture encoder (teacher, student), train and test FRFSR stage 1, then stage 2
    (feature reuse), and write a metrics table.

    Args:
        workdir (str): Output folder (created). Default: ``frfsr_demo``.
        iters (int): Stage-1 training iterations. Default: 150 (about 4 minutes on 2 CPU cores).
        stage2_iters (int): Stage-2 training iterations; 0 skips stage 2. Default: 40.
        gt_size (int): HR training crop size (multiple of 4, at least 60). Default: 64.
        batch_size (int): Training batch size. Default: 4.
        crops_per_photo (int): Training pairs cut from each photo. Default: 16.
        train_encoder (bool): Train the texture encoder first and use the student in stages 1 and 2 (else the
            encoder stays random). Default: True.

    Returns:
        str: Path of the metrics table.
    """
    workdir = osp.abspath(workdir)
    data_root = osp.join(workdir, 'data')
    build_train_set(osp.join(data_root, 'train'), gt_size, crops_per_photo)
    build_cufed5_like_set(osp.join(data_root, 'test'))
    options_dir = osp.join(workdir, 'options')
    os.makedirs(options_dir, exist_ok=True)
    stage1_opt = train_options(data_root, iters, gt_size, batch_size)
    if train_encoder:
        stage1_opt['network_extractor']['pretrained'] = train_texture_encoder(data_root, options_dir, workdir)
    stage1_weights, stage1_results = train_and_test(stage1_opt, options_dir, workdir)
    sr_dirs = {'FRFSR stage 1': stage1_results}
    if stage2_iters:
        _, sr_dirs['FRFSR stage 2 (FRF)'] = train_and_test(
            stage2_options(stage1_opt, stage1_weights, stage2_iters), options_dir, workdir)
    table = metrics_table(osp.join(data_root, 'test'), sr_dirs)
    table_path = osp.join(workdir, 'results', 'demo_metrics.md')
    with open(table_path, 'w', encoding='utf-8') as file:
        file.write('# FRFSR demo: CUFED5-like test set, Y channel, 4-pixel border\n\n' + table)
    print(table)
    print('SR images and comparisons: ' + ', '.join(sr_dirs.values()) + f'\nTable: {table_path}')
    return table_path
