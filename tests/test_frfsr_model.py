"""FRFSRModel in-process: frozen parts, learning-rate groups, learning on real photos, padded validation."""
import random

import numpy as np
import pytest
import torch
from basicsr.models import build_model
from helpers import tiny_train_options
from torch.utils.data import DataLoader

from frfsr_plugin.data.cufed_dataset import RefCUFEDDataset
from frfsr_plugin.utils.errors import TrainingDivergedError, UserInputError


def make_model(demo_data, **train_overrides):
    opt = tiny_train_options(demo_data, total_iter=100)
    opt.update(is_train=True, dist=False, rank=0, world_size=1)
    opt['train']['optim_g'].update(train_overrides)
    return build_model(opt), opt


def train_batch(opt, batch_size=2):
    np.random.seed(0)
    random.seed(0)
    dataset_opt = dict(opt['datasets']['train'], phase='train', scale=4)
    return next(iter(DataLoader(RefCUFEDDataset(dataset_opt), batch_size=batch_size, shuffle=False)))


def test_frozen_networks_are_eval_without_grad_and_not_optimised(demo_data):
    model, _ = make_model(demo_data)
    optimised = {id(p) for group in model.optimizer_g.param_groups for p in group['params']}
    pipeline = model.reference_pipeline
    for net in (pipeline.extractor, pipeline.correspondence, pipeline.sife):
        assert not net.training
        assert all(not p.requires_grad and id(p) not in optimised for p in net.parameters())
    assert optimised == {id(p) for p in model.net_g.parameters()}


def test_param_group_lrs_follow_regexes(demo_data):
    groups = [{
        'params': r'^align_(down|up)_large\.(offset_conv|dcn\.conv_offset_mask)',
        'lr': 3e-4
    }, {
        'params': r'^align_up_small\.(offset_conv|dcn\.conv_offset_mask)',
        'lr': 1e-6
    }]
    model, _ = make_model(demo_data, param_group_lrs=groups)
    names = {id(p): n for n, p in model.net_g.named_parameters()}
    main, large, small = model.optimizer_g.param_groups
    assert main['lr'] == 2e-3 and large['lr'] == 3e-4 and small['lr'] == 1e-6
    assert sorted(names[id(p)] for p in small['params']) == [
        'align_up_small.dcn.conv_offset_mask.bias', 'align_up_small.dcn.conv_offset_mask.weight',
        'align_up_small.offset_conv1.bias', 'align_up_small.offset_conv1.weight', 'align_up_small.offset_conv2.bias',
        'align_up_small.offset_conv2.weight'
    ]
    assert len(large['params']) == 12 and 'align_up_small.dcn.weight' in {names[id(p)] for p in main['params']}


def test_param_group_regex_matching_nothing_is_an_error(demo_data):
    with pytest.raises(UserInputError, match=r"param_group_lrs\[0\].*'nope'"):
        make_model(demo_data, param_group_lrs=[{'params': 'nope', 'lr': 1e-3}])


def batch_l1(model):
    model.test()
    return (model.output - model.gt).abs().mean().item()


@pytest.mark.integration
def test_training_reduces_l1_on_real_photos(demo_data):
    """The SR starts as bilinear upsampling (tiny random tail); 40 steps on one batch of photo crops must beat it."""
    torch.manual_seed(0)
    model, opt = make_model(demo_data, lr=1e-3)
    batch = train_batch(opt, batch_size=4)
    model.feed_data(batch)
    initial = batch_l1(model)
    for step in range(1, 41):
        model.feed_data(batch)
        model.optimize_parameters(step)
    assert model.get_current_log()['l_pix'] > 0
    assert batch_l1(model) < 0.97 * initial  # measured: 0.957


def test_test_crops_padded_output_to_gt_size(demo_data):
    model, opt = make_model(demo_data)
    from frfsr_plugin.data.refsr_test_dataset import RefSRTestDataset
    dataset = RefSRTestDataset(dict(opt['datasets']['val'], phase='val', scale=4))
    sample = next(s for s in dataset if s['ref'].shape[-2:] != s['gt'].shape[-2:])
    model.feed_data({k: v.unsqueeze(0) for k, v in sample.items() if torch.is_tensor(v)})
    model.test()
    assert model.output.shape[-2:] == sample['gt'].shape[-2:]
    assert model.lq.shape[-2:] == tuple(s // 4 for s in sample['ref'].shape[-2:])


def test_non_finite_loss_skips_updates_then_stops_training(demo_data):
    model, opt = make_model(demo_data)
    model.opt['train']['max_nonfinite_steps'] = 3
    batch = train_batch(opt)
    batch['gt'] = torch.full_like(batch['gt'], float('nan'))
    before = {k: v.clone() for k, v in model.net_g.state_dict().items()}
    for step in (1, 2):
        model.feed_data(batch)
        model.optimize_parameters(step)
    assert all(torch.equal(v, before[k]) for k, v in model.net_g.state_dict().items())
    assert model.nonfinite_steps['net_g'] == 2
    model.feed_data(batch)
    with pytest.raises(TrainingDivergedError, match=r'iteration 3: non-finite loss \(l_pix=nan\) for 3 iterations'):
        model.optimize_parameters(3)
    assert all(torch.isfinite(v).all() for v in model.net_g.state_dict().values())
