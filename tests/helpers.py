"""Shared builders for tests: demo photo datasets and tiny FRFSR options."""
import copy
from os import path as osp

from frfsr_plugin.cli.demo import demo_networks, test_dataset_options, train_options
from frfsr_plugin.cli.demo_data import build_cufed5_like_set, build_train_set

GT_SIZE = 64


def build_demo_data(root, crops_per_photo=2):
    """CUFED-like train pairs and a CUFED5-like test set from scikit-image photos under ``root``."""
    build_train_set(osp.join(root, 'train'), GT_SIZE, crops_per_photo)
    build_cufed5_like_set(osp.join(root, 'test'), groups_per_photo=1)
    return root


def tiny_networks():
    """The demo's networks, narrowed further so that a training step takes well under a second."""
    nets = copy.deepcopy(demo_networks())
    nets['network_sife'].update(num_feat=8, num_block=1, num_grow_ch=4)
    nets['network_g'].update(num_feat=16, num_res_blocks=1, sife_channels=8)
    return nets


def tiny_train_options(data_root, total_iter, name='tiny_frfsr'):
    opt = train_options(data_root, total_iter, GT_SIZE, batch_size=2)
    opt.update(tiny_networks())
    opt['name'] = name
    opt['val']['val_freq'] = total_iter
    opt['logger'].update(print_freq=1, save_checkpoint_freq=2, use_tb_logger=False)
    return opt


def tiny_test_options(data_root, weights, name='test_tiny_frfsr'):
    opt = {
        'name': name,
        'model_type': 'FRFSRModel',
        'scale': 4,
        'num_gpu': 0,
        'manual_seed': 0,
        'datasets': {
            'test_1': test_dataset_options(osp.join(data_root, 'test'))
        },
        **tiny_networks(), 'path': {
            'pretrain_network_g': weights,
            'strict_load_g': True
        },
        'val': {
            'save_img': True,
            'suffix': 'SR',
            'metrics': {
                'psnr': {
                    'type': 'calculate_psnr',
                    'crop_border': 4,
                    'test_y_channel': True
                }
            }
        }
    }
    return opt


def tiny_stage2_options(data_root, total_iter, stage1_weights, name='tiny_frf'):
    """Tiny FRFSR stage-2 (feature reuse) options whose Net1 and Net2 start from ``stage1_weights``."""
    opt = tiny_train_options(data_root, total_iter, name)
    opt['model_type'] = 'FeatureReuseModel'
    opt['network_stage1'] = opt['network_g']
    opt['network_g'] = dict(opt['network_g'], type='FRFSRStage2Net', reuse_channels=16)
    opt['network_d'] = {'type': 'FRFSRDiscriminator', 'num_feat': 4}
    opt['feature_reuse'] = {'source': 'aggregate_up_large', 'port': 'output'}
    opt['path'].update(pretrain_network_stage1=stage1_weights, pretrain_network_g=stage1_weights, strict_load_g=False)
    opt['path']['ignore_resume_networks'] = opt['path']['ignore_resume_networks'] + ['network_stage1']
    opt['train'].update(
        optim_d={
            'type': 'Adam',
            'lr': 1e-4,
            'betas': [0.9, 0.999]
        },
        perceptual_opt={
            'type': 'FRFSRPerceptualLoss',
            'layer_weights': {
                'relu5_1': 1.0
            },
            'pretrained': False,
            'perceptual_weight': 1e-4,
            'criterion': 'fro'
        },
        gan_opt={
            'type': 'GANLoss',
            'gan_type': 'wgan',
            'loss_weight': 1e-6
        },
        gp_opt={
            'type': 'WGANGradientPenaltyLoss',
            'loss_weight': 10.0
        })
    return opt
