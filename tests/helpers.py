"""Tiny options for the tests, read from the YAML files in ``tests/configs/`` (the demo's recipes, narrowed)."""
import copy
from os import path as osp

import torch
import yaml
from torch import nn

CONFIGS = osp.join(osp.dirname(osp.abspath(__file__)), 'configs')
NETWORK_KEYS = ('network_extractor', 'network_map', 'network_sife', 'network_g')


def load_config(name, **values):
    """``tests/configs/<name>.yml`` with ``{key}`` in its strings replaced by ``values[key]``.

    Args:
        name (str): File name without ``.yml``.
        **values (str): Values of the placeholders (``data_root``, ``weights``, ...).

    Returns:
        dict: The options.
    """
    with open(osp.join(CONFIGS, f'{name}.yml'), encoding='utf-8') as file:
        opt = yaml.safe_load(file)

    def fill(value):
        if isinstance(value, dict):
            return {key: fill(item) for key, item in value.items()}
        if isinstance(value, list):
            return [fill(item) for item in value]
        return value.format(**values) if isinstance(value, str) else value

    return fill(opt)


def write_yaml(path, opt):
    """Write ``opt`` as a YAML file; returns its path as a string."""
    with open(path, 'w', encoding='utf-8') as file:
        yaml.safe_dump(opt, file, sort_keys=False)
    return str(path)


def set_length(opt, total_iter):
    """``total_iter`` iterations, the learning rate halved after 80 % of them, validation at the end."""
    opt['train'].update(total_iter=total_iter)
    opt['train']['scheduler']['milestones'] = [int(total_iter * 0.8)]
    opt['val']['val_freq'] = total_iter
    return opt


def tiny_networks():
    """The frozen networks and the stage-1 generator of the tiny configs (``network_*`` sections)."""
    opt = load_config('tiny_stage1_train', data_root='')
    return {key: copy.deepcopy(opt[key]) for key in NETWORK_KEYS}


def tiny_train_options(data_root, total_iter, name='tiny_frfsr'):
    """Options of ``basicsr train`` for the tiny stage 1 on the demo data under ``data_root``."""
    return set_length(dict(load_config('tiny_stage1_train', data_root=data_root), name=name), total_iter)


def tiny_stage2_options(data_root, total_iter, stage1_weights, name='tiny_frf'):
    """Tiny FRFSR stage-2 (feature reuse) options whose Net1 and Net2 start from ``stage1_weights``."""
    opt = load_config('tiny_stage2_train', data_root=data_root, stage1_weights=stage1_weights)
    return set_length(dict(opt, name=name), total_iter)


def tiny_test_options(data_root, weights, name='tiny_frfsr'):
    """`basicsr test` options (run name ``test_<name>``) for the tiny stage-1 generator ``weights``."""
    return dict(load_config('tiny_stage1_test', data_root=data_root, weights=weights), name=f'test_{name}')


def tiny_stage2_test_options(data_root, weights, stage1_weights, name='tiny_frf'):
    """`basicsr test` options (run name ``test_<name>``) for a tiny two-stage model: Net2 ``weights``, Net1
    ``stage1_weights``."""
    opt = load_config('tiny_stage2_test', data_root=data_root, weights=weights, stage1_weights=stage1_weights)
    return dict(opt, name=f'test_{name}')


def encoder_options(name, data_root, gt_size=64, batch_size=4, **values):
    """The tiny texture-encoder teacher (``name='tiny_teacher'``) or student (``'tiny_student'``, with
    ``teacher_weights``) on the demo data, with images of ``gt_size`` pixels in batches of ``batch_size``."""
    opt = load_config(name, data_root=data_root, **values)
    for dataset in opt['datasets'].values():
        dataset['gt_size'] = gt_size
    opt['datasets']['train']['batch_size_per_gpu'] = batch_size
    return opt


def latest_weights(workdir, opt):
    """Path of the ``net_g_latest.pth`` that ``basicsr train`` writes for ``opt`` in ``workdir``."""
    return osp.join(workdir, 'experiments', opt['name'], 'models', 'net_g_latest.pth')


def make_loud(net, gain=0.7, tail_gain=0.1):
    """Loud random weights: every conv N(0, gain^2 / fan_in), zero bias; offset/mask branches 10x smaller, the last
    tail conv x tail_gain, so that every layer changes the output (seed 3)."""
    torch.manual_seed(3)
    for conv in (module for module in net.modules() if isinstance(module, nn.Conv2d)):
        nn.init.normal_(conv.weight, 0.0, gain * conv.weight[0].numel()**-0.5)
        nn.init.zeros_(conv.bias)
    for name, conv in net.named_modules():
        if name.endswith('conv_offset_mask'):
            conv.weight.data.mul_(0.1)
    [module for module in net.tail.modules() if isinstance(module, nn.Conv2d)][-1].weight.data.mul_(tail_gain)
    return net
