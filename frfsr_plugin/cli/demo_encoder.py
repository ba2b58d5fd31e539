"""Tiny texture-encoder training options (teacher, then student) for the demo data, run through ``basicsr train``.

The chain mirrors the full recipe (``options/texture_encoder_{teacher,student}.yml``) on the demo's CUFED-like
train set, with its CUFED5-like test set as held-out pairs: the teacher trains on HR / warped HR, the student on
LR-up / warped HR with distillation from the teacher. The student's ``net_g_latest.pth`` (:func:`latest_weights`)
can replace the random ``network_extractor`` of the demo's stage-1 options
(``{'type': 'FRFSRContrastiveEncoder', 'pretrained': <student weights>}``).

Differences from the full recipe, because no ImageNet VGG16 can be downloaded here: the teacher starts from random
weights (torchvision's VGG init; both branches start from the same weights, as both start from one VGG16 in
C2-Matching) with Adam at 1e-4 (1e-3 and 3e-4 oscillate from scratch with batches of 4), and the student starts
from the teacher's weights instead of VGG16. The 64-pixel demo crops give a 16 x 16 feature grid, so the geometry
shrinks with them: a 4-pixel border and at least 32 correspondences per pair. The untrained encoder already matches
about 57 % of held-out LR-up positions of the demo's test photos; 12 + 8 iterations lower that (to about 45 %),
50 + 30 barely change it (57.4 %), the defaults, 200 + 100 iterations (about a minute on 2 CPU cores), raise it to
about 71 % (``docs/design.md``, Demo).
"""
import copy
from os import path as osp

import torch

from frfsr_plugin.archs.contrastive_encoder_arch import FRFSRContrastiveEncoder
from frfsr_plugin.metrics.matching_accuracy import held_out_matching_accuracy

TEACHER_NAME = 'demo_encoder_teacher'
STUDENT_NAME = 'demo_encoder_student'
# yapf: disable
DEMO_GEOMETRY = {'border': 4, 'min_correspondences': 32}
MATCHING_METRICS = {
    'matching_acc': {'type': 'calculate_matching_accuracy', 'tolerance': 1, 'border': DEMO_GEOMETRY['border'],
                     'better': 'higher'},
}


def encoder_dataset_options(data_root, gt_size, batch_size):
    """Train pairs from ``data_root/train/input``; held-out pairs from the CUFED5-like ``data_root/test``."""
    return {
        'train': {'name': 'CUFED_demo', 'type': 'ContrastiveHomographyDataset',
                  'dataroot_in': osp.join(data_root, 'train', 'input'), 'gt_size': gt_size, 'use_flip': True,
                  'use_rot': True, 'num_worker_per_gpu': 0, 'batch_size_per_gpu': batch_size,
                  'dataset_enlarge_ratio': 1},
        'val': {'name': 'CUFED5_demo_homography', 'type': 'ContrastiveHomographyDataset',
                'dataroot_in': osp.join(data_root, 'test'), 'gt_size': gt_size, 'homography_seed': 0},
    }


def teacher_options(data_root, total_iter=200, gt_size=64, batch_size=4, lr=1e-4, name=TEACHER_NAME):
    """Teacher stage on CPU from random weights.

    Args:
        data_root (str): Demo data folder (``train/input`` and ``test``).
        total_iter (int): Training iterations; checkpoints halfway and at the end, validation at the end.
            Default: 200.
        gt_size (int): Image side. Default: 64 (the demo crops).
        batch_size (int): Default: 4.
        lr (float): Adam learning rate. Default: 1e-4.
        name (str): Experiment name. Default: ``demo_encoder_teacher``.

    Returns:
        dict: Options for ``basicsr train``.
    """
    return {
        'name': name, 'model_type': 'TextureEncoderTeacherModel', 'scale': 4, 'num_gpu': 0, 'manual_seed': 10,
        'datasets': encoder_dataset_options(data_root, gt_size, batch_size),
        'network_g': {'type': 'FRFSRContrastiveEncoder', 'pretrained': False},
        'path': {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None},
        'train': {
            'optim_g': {'type': 'Adam', 'lr': lr, 'betas': [0.9, 0.999]},
            'scheduler': {'type': 'MultiStepLR', 'milestones': [], 'gamma': 0.1},
            'total_iter': total_iter, 'warmup_iter': -1,
            'triplet_opt': {'type': 'TextureTripletLoss', 'margin': 1.0, 'safe_radius': 4, **DEMO_GEOMETRY},
        },
        # BasicSR validates after the last iteration anyway; an in-loop validation at total_iter would repeat it
        'val': {'val_freq': total_iter + 1, 'save_img': False, 'branch1_input': 'hr',
                'metrics': copy.deepcopy(MATCHING_METRICS)},
        'logger': {'print_freq': max(total_iter // 10, 1), 'save_checkpoint_freq': max(total_iter // 2, 1),
                   'use_tb_logger': True},
    }


def student_options(teacher_opt, teacher_weights, total_iter=100, name=STUDENT_NAME):
    """Student stage from the teacher's options: LR-up / warped HR, triplet + 15 x KL, starting from the teacher.

    Args:
        teacher_opt (dict): Options of the teacher run (data, sizes and learning rate are reused).
        teacher_weights (str): The teacher's checkpoint (``net_g_*.pth``).
        total_iter (int): Training iterations. Default: 100.
        name (str): Experiment name. Default: ``demo_encoder_student``.

    Returns:
        dict: Options for ``basicsr train``.
    """
    opt = copy.deepcopy(teacher_opt)
    opt.update(name=name, model_type='TextureEncoderStudentModel',
               network_teacher={'type': 'FRFSRContrastiveEncoder', 'pretrained': False})
    opt['path'].update(pretrain_network_g=teacher_weights, pretrain_network_teacher=teacher_weights,
                       ignore_resume_networks=['network_teacher'])
    opt['train'].update(
        total_iter=total_iter,
        distill_opt={'type': 'TextureDistillationLoss', 'loss_weight': 15.0, 'temperature': 0.15, **DEMO_GEOMETRY})
    opt['val'].update(val_freq=total_iter + 1, branch1_input='lr_up')
    opt['logger'].update(print_freq=max(total_iter // 10, 1), save_checkpoint_freq=max(total_iter // 2, 1))
    return opt
# yapf: enable


def latest_weights(workdir, opt):
    """Path of the ``net_g_latest.pth`` that ``basicsr train`` writes for ``opt`` in ``workdir``."""
    return osp.join(workdir, 'experiments', opt['name'], 'models', 'net_g_latest.pth')


def encoder_accuracy(test_root, weights, gt_size=64):
    """Held-out matching accuracy (LR-up vs warped HR) of an encoder on the demo's test photos, as its validation.

    Args:
        test_root (str): The CUFED5-like test folder.
        weights (str | None): Encoder checkpoint; None for an untrained encoder (seed 10, as the demo's teacher).
        gt_size (int): Image side. Default: 64.

    Returns:
        float: Mean accuracy over the held-out pairs.
    """
    if weights is None:
        torch.manual_seed(10)
    encoder = FRFSRContrastiveEncoder(pretrained=weights or False).eval()
    return held_out_matching_accuracy(encoder, test_root, size=gt_size, lr_up=True, border=DEMO_GEOMETRY['border'])[0]
