"""Shared builders for tests: demo photo datasets and tiny FRFSR options (the demo's, narrowed)."""
import copy
from os import path as osp

from frfsr_plugin.cli.demo import demo_networks, stage2_options, test_options, train_options
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
    opt.update(tiny_networks(), name=name)
    opt['val']['val_freq'] = total_iter
    opt['logger'].update(print_freq=1, save_checkpoint_freq=2, use_tb_logger=False)
    return opt


def tiny_test_options(data_root, weights, name='tiny_frfsr'):
    """`basicsr test` options (run name ``test_<name>``) for the tiny stage-1 generator."""
    return test_options(tiny_train_options(data_root, 1, name), weights)


def tiny_stage2_options(data_root, total_iter, stage1_weights, name='tiny_frf'):
    """Tiny FRFSR stage-2 (feature reuse) options whose Net1 and Net2 start from ``stage1_weights``."""
    opt = stage2_options(tiny_train_options(data_root, total_iter), stage1_weights, total_iter, name)
    opt['val']['val_freq'] = total_iter
    opt['logger'].update(print_freq=1, save_checkpoint_freq=2)
    return opt
