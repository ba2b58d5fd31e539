"""``frfsr demo``: the whole stage-1 flow on photos bundled with scikit-image, through the ``basicsr`` launcher.

It writes, under the working folder: ``data/`` (a CUFED-like train set and a CUFED5-like test set), ``options/``
(the YAMLs it runs), ``experiments/`` and ``results/`` (BasicSR's outputs) and ``results/demo_metrics.md``.
The frozen parts (texture encoder, VGG19, SIFE) are randomly initialised because no pretrained weights can be
downloaded here; put real weights into the YAMLs for meaningful correspondences.
"""
import os
import subprocess
import sys
from os import path as osp

import numpy as np
import torch.nn.functional as F
import yaml
from PIL import Image

from frfsr_plugin.cli.demo_data import build_cufed5_like_set, build_train_set

DEMO_NAME = 'demo_frfsr_stage1'
Y_METRICS = {
    'psnr': {
        'type': 'calculate_psnr',
        'crop_border': 4,
        'test_y_channel': True
    },
    'ssim': {
        'type': 'calculate_ssim',
        'crop_border': 4,
        'test_y_channel': True
    },
}


def demo_networks():
    """Small networks (about 1/3 of FRFSR's width, 2 ResBlocks per TAAM) that train in minutes on 2 CPU cores."""
    return {
        'network_extractor': {
            'type': 'FRFSRContrastiveEncoder',
            'pretrained': False
        },
        'network_map': {
            'type': 'FRFSRCorrespondence',
            'pretrained': False
        },
        'network_sife': {
            'type': 'FRFSRSIFENet',
            'pretrained': False,
            'num_feat': 32,
            'num_block': 2,
            'num_grow_ch': 16
        },
        'network_g': {
            'type': 'FRFSRNet',
            'num_feat': 32,
            'num_res_blocks': 2,
            'num_ddf_blocks': 1,
            'sife_channels': 32,
            'dcn_backend': 'pytorch'
        },
    }


def test_dataset_options(data_root):
    return {
        'name': 'CUFED5_demo',
        'type': 'RefSRTestDataset',
        'mode': 'cufed5',
        'dataroot_gt': data_root,
        'ref_level': 1
    }


def train_options(data_root, total_iter, gt_size, batch_size):
    """Options of the demo's stage-1 training (CPU, validation on the CUFED5-like set every quarter)."""
    frozen = ['network_extractor', 'network_map', 'network_sife']
    return {
        'name': DEMO_NAME,
        'model_type': 'FRFSRModel',
        'scale': 4,
        'num_gpu': 0,
        'manual_seed': 10,
        'datasets': {
            'train': {
                'name': 'CUFED_demo',
                'type': 'RefCUFEDDataset',
                'dataroot_gt': osp.join(data_root, 'train', 'input'),
                'dataroot_ref': osp.join(data_root, 'train', 'ref'),
                'gt_size': gt_size,
                'use_flip': True,
                'use_rot': True,
                'ref_shuffle_prob': 0.5,
                'ref_shuffle_grid': 4,
                'num_worker_per_gpu': 0,
                'batch_size_per_gpu': batch_size,
                'dataset_enlarge_ratio': 1
            },
            'val': test_dataset_options(osp.join(data_root, 'test')),
        },
        **demo_networks(),
        'path': {
            'pretrain_network_g': None,
            'strict_load_g': True,
            'resume_state': None,
            'ignore_resume_networks': frozen
        },
        'train': {
            'ema_decay': 0,
            'optim_g': {
                'type': 'Adam',
                'lr': 2e-3,
                'betas': [0.9, 0.999]
            },
            'scheduler': {
                'type': 'MultiStepLR',
                'milestones': [int(total_iter * 0.8)],
                'gamma': 0.5
            },
            'total_iter': total_iter,
            'warmup_iter': -1,
            'pixel_opt': {
                'type': 'L1Loss',
                'loss_weight': 1.0,
                'reduction': 'mean'
            },
        },
        'val': {
            'val_freq': max(total_iter // 4, 1),
            'save_img': False,
            'metrics': Y_METRICS
        },
        'logger': {
            'print_freq': max(total_iter // 20, 1),
            'save_checkpoint_freq': max(total_iter // 2, 1),
            'use_tb_logger': True
        },
    }


def test_options(data_root, weights):
    return {
        'name': f'test_{DEMO_NAME}',
        'model_type': 'FRFSRModel',
        'scale': 4,
        'num_gpu': 0,
        'manual_seed': 10,
        'datasets': {
            'test_1': test_dataset_options(osp.join(data_root, 'test'))
        },
        **demo_networks(),
        'path': {
            'pretrain_network_g': weights,
            'strict_load_g': True,
            'param_key_g': 'params'
        },
        'val': {
            'save_img': True,
            'suffix': 'SR',
            'metrics': Y_METRICS
        },
    }


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


def metrics_table(data_root, sr_dir):
    """Per-image Y-PSNR/SSIM (crop 4) of bilinear and bicubic upsampling and of the SR output, in Markdown."""
    from basicsr.metrics import calculate_psnr, calculate_ssim
    from basicsr.utils import tensor2img

    from frfsr_plugin.data.refsr_test_dataset import RefSRTestDataset
    dataset = RefSRTestDataset({**test_dataset_options(data_root), 'phase': 'test', 'scale': 4})
    methods = ('bilinear (untrained FRFSR)', 'bicubic', 'FRFSR')
    rows = ['| image | ' + ' | '.join(f'{m} PSNR / SSIM' for m in methods) + ' |', '|---' * (len(methods) + 1) + '|']
    totals = np.zeros((len(methods), 2))
    for sample in dataset:
        gt = tensor2img(sample['gt'])
        name = osp.splitext(osp.basename(sample['lq_path']))[0]
        sr = np.asarray(Image.open(osp.join(sr_dir, f'{name}_SR.png')).convert('RGB'))[..., ::-1]
        values = np.array([[f(img, gt, crop_border=4, test_y_channel=True) for f in (calculate_psnr, calculate_ssim)]
                           for img in (*upsample_baselines(sample), sr)])
        totals += values
        rows.append(f'| {name} | ' + ' | '.join(f'{p:.2f} / {s:.4f}' for p, s in values) + ' |')
    rows.append('| **mean** | ' + ' | '.join(f'{p:.2f} / {s:.4f}' for p, s in totals / len(dataset)) + ' |')
    return '\n'.join(rows) + '\n'


def run_demo(workdir='frfsr_demo', iters=150, gt_size=64, batch_size=4, crops_per_photo=16):
    """Build demo data, train FRFSR stage 1, test it and write a metrics table.

    Args:
        workdir (str): Output folder (created). Default: ``frfsr_demo``.
        iters (int): Training iterations. Default: 150 (a few minutes on 2 CPU cores).
        gt_size (int): HR training crop size (multiple of 4, at least 60). Default: 64.
        batch_size (int): Training batch size. Default: 4.
        crops_per_photo (int): Training pairs cut from each photo. Default: 16.

    Returns:
        str: Path of the metrics table.
    """
    workdir = osp.abspath(workdir)
    data_root = osp.join(workdir, 'data')
    build_train_set(osp.join(data_root, 'train'), gt_size, crops_per_photo)
    build_cufed5_like_set(osp.join(data_root, 'test'))
    options_dir = osp.join(workdir, 'options')
    os.makedirs(options_dir, exist_ok=True)
    train_yml = write_yaml(
        osp.join(options_dir, 'demo_stage1.yml'), train_options(data_root, iters, gt_size, batch_size))
    weights = osp.join(workdir, 'experiments', DEMO_NAME, 'models', 'net_g_latest.pth')
    test_yml = write_yaml(osp.join(options_dir, 'demo_test.yml'), test_options(data_root, weights))
    run_basicsr('train', train_yml, workdir)
    run_basicsr('test', test_yml, workdir)
    table = metrics_table(
        osp.join(data_root, 'test'), osp.join(workdir, 'results', f'test_{DEMO_NAME}', 'visualization', 'CUFED5_demo'))
    table_path = osp.join(workdir, 'results', 'demo_metrics.md')
    with open(table_path, 'w', encoding='utf-8') as file:
        file.write('# FRFSR demo: CUFED5-like test set, Y channel, 4-pixel border\n\n' + table)
    print(table)
    print(f'SR images: {osp.dirname(table_path)}/test_{DEMO_NAME}/visualization/CUFED5_demo\nTable: {table_path}')
    return table_path
