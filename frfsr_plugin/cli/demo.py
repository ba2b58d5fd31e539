"""``frfsr demo``: the whole two-stage flow on photos bundled with scikit-image, through the ``basicsr`` launcher.

Steps, each a child ``basicsr`` run behind one progress line (its output goes to ``logs/<step>.log``):

1. texture encoder in miniature: teacher, then student, from random weights whose two branches start identical;
2. FRFSR stage 1 (L1), then ``basicsr test`` under five reference conditions (level-1, -3 and -5 references, the
   LR itself and the level-1 reference of another image);
3. stage 2 with feature reuse (all losses), and the same stage 2 without the reused feature (the ablation switch
   ``feature_reuse.enabled: false``), each tested under the same conditions.

It writes, under the working folder: ``data/`` (a CUFED-like train set and a CUFED5-like test set), ``options/``
(the YAMLs it runs), ``experiments/``, ``results/`` (BasicSR's outputs, labelled comparison images included),
``logs/`` and the report ``results/demo_metrics.md`` with ``results/reference_effect.png``. VGG19 and SIFE stay
randomly initialised because no pretrained weights can be downloaded here; put real weights into the YAMLs for
meaningful results. The recipe and what it shows are in ``docs/design.md`` (Demo).
"""
import copy
import os
import sys
import time
from os import path as osp

import yaml

from frfsr_plugin.cli.demo_data import build_cufed5_like_set, build_train_set
from frfsr_plugin.cli.demo_encoder import encoder_accuracy, latest_weights, student_options, teacher_options
from frfsr_plugin.cli.demo_progress import StepRunner, format_seconds
from frfsr_plugin.cli.demo_report import (REPORT_CONDITIONS, condition_dataset_name, metrics_table,
                                          write_reference_effect)
from frfsr_plugin.data.reference_conditions import reference_condition_options
from frfsr_plugin.metrics.evaluation import PAPER_METRICS
from frfsr_plugin.restoration.pipeline import REFERENCE_NETWORKS, random_reference_network_options

STAGE1_NAME = 'demo_frfsr_stage1'
STAGE2_NAME = 'demo_frfsr_stage2'
ABLATION_NAME = 'demo_frfsr_stage2_no_reuse'
TEST_SET_NAME = 'CUFED5_demo'
FROZEN_NETWORKS = list(REFERENCE_NETWORKS)
BASICSR = [sys.executable, '-m', 'frfsr_plugin.cli.basicsr_cli']
# yapf: disable
# Learning rates: the official groups of options/frfsr_stage1.yml (main and relu1 offset branches 1, relu2 0.1,
# relu3 0.01), scaled to a main rate of 5e-4: 2e-3 on every parameter diverged, 1e-4 learns too slowly for the demo.
DEMO_LR = 5e-4
OFFSET_GROUPS = (('^align_(down|up)_large\\.(offset_conv|dcn\\.conv_offset_mask)', 1.0),
                 ('^align_(down|up)_medium\\.(offset_conv|dcn\\.conv_offset_mask)', 0.1),
                 ('^align_up_small\\.(offset_conv|dcn\\.conv_offset_mask)', 0.01))


def demo_networks():
    """Small networks that learn texture transfer in minutes on 2 CPU cores: half of FRFSR's width, one ResBlock and
    one residual DDF block per TAAM, one deformable group (the offset branches dominate the cost at this width)."""
    return {
        **random_reference_network_options(network_sife={'num_feat': 32, 'num_block': 2, 'num_grow_ch': 16}),
        'network_g': {'type': 'FRFSRNet', 'num_feat': 32, 'num_res_blocks': 1, 'num_ddf_blocks': 1,
                      'deformable_groups': 1, 'sife_channels': 32, 'dcn_backend': 'pytorch'},
    }


def generator_optimizer(lr=DEMO_LR):
    """Adam with the official offset-branch learning-rate groups, relative to ``lr``."""
    return {'type': 'Adam', 'lr': lr, 'betas': [0.9, 0.999],
            'param_group_lrs': [{'params': pattern, 'lr': lr * factor} for pattern, factor in OFFSET_GROUPS]}


def logger_options(total_iter):
    """Iteration lines often enough for the progress bar; checkpoints at the end only."""
    return {'print_freq': max(total_iter // 50, 1), 'save_checkpoint_freq': total_iter, 'use_tb_logger': True}


def train_options(data_root, total_iter, gt_size, batch_size):
    """Stage-1 training on CPU (L1). No validation during training: the test step evaluates the final weights."""
    return {
        'name': STAGE1_NAME, 'model_type': 'FRFSRModel', 'scale': 4, 'num_gpu': 0, 'manual_seed': 10,
        'datasets': {
            'train': {'name': 'CUFED_demo', 'type': 'RefCUFEDDataset',
                      'dataroot_gt': osp.join(data_root, 'train', 'input'),
                      'dataroot_ref': osp.join(data_root, 'train', 'ref'), 'gt_size': gt_size, 'use_flip': True,
                      'use_rot': True, 'ref_shuffle_prob': 0.5, 'ref_shuffle_grid': 4, 'num_worker_per_gpu': 0,
                      'batch_size_per_gpu': batch_size, 'dataset_enlarge_ratio': 1},
        },
        **demo_networks(),
        'path': {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None,
                 'ignore_resume_networks': list(FROZEN_NETWORKS)},
        'train': {
            'ema_decay': 0,
            'optim_g': generator_optimizer(),
            'scheduler': {'type': 'MultiStepLR', 'milestones': [int(total_iter * 0.8)], 'gamma': 0.5},
            'total_iter': total_iter, 'warmup_iter': -1,
            'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0, 'reduction': 'mean'},
        },
        'logger': logger_options(total_iter),
    }


def stage2_options(stage1_opt, stage1_weights, total_iter, reuse=True):
    """Stage-2 options derived from stage-1 options, trained with L1 + perceptual + WGAN-GP (random VGG19 here).

    Args:
        stage1_opt (dict): The stage-1 training options.
        stage1_weights (str): The stage-1 checkpoint: Net1, and the initialisation of Net2.
        total_iter (int): Training iterations.
        reuse (bool): Feature reuse: Net2 is FRFSRStage2Net and receives Net1's F_SR^rec. False: the ablation
            (``feature_reuse.enabled: false``): Net2 is the stage-1 architecture, trained with the same losses from the
            same weights, and no Net1 runs. Default: True.

    Returns:
        dict: Options for ``basicsr train``.
    """
    opt = copy.deepcopy(stage1_opt)
    net1 = opt['network_g']
    opt.update(name=STAGE2_NAME if reuse else ABLATION_NAME, model_type='FeatureReuseModel',
               network_d={'type': 'FRFSRDiscriminator', 'num_feat': 8})
    if reuse:
        opt.update(network_stage1=net1, network_g=dict(net1, type='FRFSRStage2Net', reuse_channels=net1['num_feat']),
                   feature_reuse={'source': 'aggregate_up_large', 'port': 'output'})
        opt['path'].update(pretrain_network_stage1=stage1_weights, strict_load_g=False,
                           ignore_resume_networks=FROZEN_NETWORKS + ['network_stage1'])
    else:
        opt['feature_reuse'] = {'enabled': False}
    opt['path']['pretrain_network_g'] = stage1_weights
    opt['train'].update(
        optim_d={'type': 'Adam', 'lr': 1e-4, 'betas': [0.9, 0.999]},
        scheduler=dict(opt['train']['scheduler'], milestones=[int(total_iter * 0.8)]),
        total_iter=total_iter,
        perceptual_opt={'type': 'FRFSRPerceptualLoss', 'layer_weights': {'relu5_1': 1.0}, 'pretrained': False,
                        'perceptual_weight': 1e-4, 'criterion': 'fro'},
        gan_opt={'type': 'GANLoss', 'gan_type': 'wgan', 'loss_weight': 1e-6},
        gp_opt={'type': 'WGANGradientPenaltyLoss', 'loss_weight': 10.0})
    opt['logger'] = logger_options(total_iter)
    return opt


def test_options(train_opt, weights, test_root):
    """``basicsr test`` of the generator trained with ``train_opt`` under every condition of the report.

    Args:
        train_opt (dict): Its training options.
        weights (str): Its checkpoint.
        test_root (str): The CUFED5-like test folder.

    Returns:
        dict: Options with one test dataset per condition (``condition_dataset_name``).
    """
    kept = ('model_type', 'scale', 'num_gpu', 'feature_reuse')
    opt = {key: copy.deepcopy(value) for key, value in train_opt.items()
           if key in kept or (key.startswith('network_') and key != 'network_d')}
    path = {key: value for key, value in train_opt['path'].items() if key == 'pretrain_network_stage1'}
    datasets = {
        f'test_{index}': reference_condition_options(condition, test_root,
                                                     name=condition_dataset_name(TEST_SET_NAME, condition))
        for index, condition in enumerate(REPORT_CONDITIONS, start=1)
    }
    opt.update(name=f"test_{train_opt['name']}", manual_seed=10, datasets=datasets,
               path=dict(path, pretrain_network_g=weights, strict_load_g=True, param_key_g='params'),
               val={'save_img': True, 'suffix': 'SR', 'metrics': PAPER_METRICS})
    return opt
# yapf: enable


def write_yaml(path, opt):
    with open(path, 'w', encoding='utf-8') as file:
        yaml.safe_dump(opt, file, sort_keys=False)
    return path


class DemoRun:
    """The demo's folders and its child ``basicsr`` runs, numbered on the terminal.

    Args:
        workdir (str): Output folder.
        steps (int): Number of child runs, for the ``[k/n]`` labels.
    """

    def __init__(self, workdir, steps):
        self.workdir = workdir
        self.options_dir = osp.join(workdir, 'options')
        self.runner = StepRunner(osp.join(workdir, 'logs'))
        self.steps, self.done = steps, 0
        os.makedirs(self.options_dir, exist_ok=True)

    def basicsr(self, command, opt, label, total_iters=0):
        """``basicsr <command>`` with ``opt`` (written to ``options/<name>.yml``) behind a progress line."""
        self.done += 1
        opt_path = write_yaml(osp.join(self.options_dir, f"{opt['name']}.yml"), opt)
        self.runner.run(
            f'[{self.done}/{self.steps}] {label}',
            BASICSR + [command, '-opt', opt_path],
            self.workdir,
            total_iters,
            log_name=f"{command}_{opt['name']}")

    def train_and_test(self, train_opt, label, test_root):
        """Train, then test under every condition; returns (latest weights, results folder of the test)."""
        self.basicsr('train', train_opt, f'train {label}', train_opt['train']['total_iter'])
        weights = latest_weights(self.workdir, train_opt)
        test_opt = test_options(train_opt, weights, test_root)
        self.basicsr('test', test_opt, f'test {label}')
        return weights, osp.join(self.workdir, 'results', test_opt['name'])


def run_demo(workdir='frfsr_demo',
             iters=200,
             stage2_iters=20,
             gt_size=64,
             batch_size=4,
             crops_per_photo=16,
             train_encoder=True,
             encoder_iters=(200, 100)):
    """Build the demo data, train the texture encoder, FRFSR stage 1 and stage 2 (with and without feature reuse),
    test each under five reference conditions and write the report.

    Args:
        workdir (str): Output folder (created). Default: ``frfsr_demo``.
        iters (int): Stage-1 training iterations. Default: 200.
        stage2_iters (int): Iterations of each stage-2 run; 0 skips stage 2. Default: 20.
        gt_size (int): HR training crop size (multiple of 4, at least 60). Default: 64.
        batch_size (int): Training batch size. Default: 4.
        crops_per_photo (int): Training pairs cut from each photo. Default: 16.
        train_encoder (bool): Train the texture encoder first and use the student in stages 1 and 2 (else the
            encoder stays random). Default: True.
        encoder_iters (tuple[int, int]): Teacher and student iterations. Default: (200, 100).

    Returns:
        str: Path of the report.
    """
    start = time.time()
    workdir = osp.abspath(workdir)
    data_root = osp.join(workdir, 'data')
    test_root = osp.join(data_root, 'test')
    build_train_set(osp.join(data_root, 'train'), gt_size, crops_per_photo)
    build_cufed5_like_set(test_root, groups_per_photo=4)
    run = DemoRun(workdir, 2 * train_encoder + 2 + 4 * bool(stage2_iters))
    print(f'frfsr demo: data in {data_root}; each step logs to {run.runner.log_dir}', flush=True)
    stage1_opt = train_options(data_root, iters, gt_size, batch_size)
    encoder_lines = []
    if train_encoder:
        teacher_opt = teacher_options(data_root, total_iter=encoder_iters[0])
        run.basicsr('train', teacher_opt, 'texture encoder: teacher', encoder_iters[0])
        student_opt = student_options(teacher_opt, latest_weights(workdir, teacher_opt), total_iter=encoder_iters[1])
        run.basicsr('train', student_opt, 'texture encoder: student', encoder_iters[1])
        student = latest_weights(workdir, student_opt)
        stage1_opt['network_extractor']['pretrained'] = student
        encoder_lines = [
            f'Held-out matching accuracy of the encoder (LR-up vs warped HR, {test_root}): untrained '
            f'{encoder_accuracy(test_root, None):.3f}, student {encoder_accuracy(test_root, student):.3f}.'
        ]
    stage1_weights, stage1_results = run.train_and_test(stage1_opt, 'FRFSR stage 1', test_root)
    results = {'stage 1': stage1_results}
    if stage2_iters:
        _, results['stage 2 (FRF)'] = run.train_and_test(
            stage2_options(stage1_opt, stage1_weights, stage2_iters), 'stage 2, feature reuse', test_root)
        _, results['stage 2 without reuse'] = run.train_and_test(
            stage2_options(stage1_opt, stage1_weights, stage2_iters, reuse=False), 'stage 2, no reuse', test_root)
    effect_path = write_reference_effect(test_root, stage1_results, TEST_SET_NAME,
                                         osp.join(workdir, 'results', 'reference_effect.png'))
    table = metrics_table(test_root, results, TEST_SET_NAME)
    wall = f'Wall time: {format_seconds(time.time() - start)}.'
    report_path = osp.join(workdir, 'results', 'demo_metrics.md')
    with open(report_path, 'w', encoding='utf-8') as file:
        file.write('# FRFSR demo: CUFED5-like test set, Y-PSNR (dB) / SSIM, 4-pixel border\n\n' + table + '\n' +
                   '\n'.join(encoder_lines + [wall]) + '\n')
    print('\n' + table)
    print('\n'.join(encoder_lines + [
        f'Report: {report_path}', f'SR with the relevant vs an irrelevant reference: {effect_path}',
        'Labelled comparisons (bicubic | SR | Ref | GT): ' +
        ', '.join(osp.join(folder, 'visualization', 'comparisons') for folder in results.values()),
        f'Full logs: {run.runner.log_dir}/ and experiments/<name>/train_*.log', wall
    ]))
    return report_path
