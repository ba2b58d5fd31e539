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
    nets['network_g'].update(num_feat=8, num_res_blocks=1, sife_channels=8)
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
