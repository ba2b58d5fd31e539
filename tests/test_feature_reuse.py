"""Feature reuse framework: frozen Net1, Net2 gradients, WGAN-GP, perceptual loss, generic wrapping of other archs."""
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from basicsr.archs import build_network
from basicsr.models import build_model
from basicsr.utils.registry import ARCH_REGISTRY, LOSS_REGISTRY
from helpers import tiny_networks, tiny_stage2_options
from torch.utils.data import DataLoader

from frfsr_plugin.data.cufed_dataset import RefCUFEDDataset
from frfsr_plugin.data.refsr_test_dataset import RefSRTestDataset
from frfsr_plugin.restoration.inference import RefSRInferencer
from frfsr_plugin.utils.errors import OptionError


@pytest.fixture(scope='module')
def stage1_weights(tiny_checkpoints):
    return tiny_checkpoints['stage1']


def make_stage2_model(demo_data, stage1_weights, **overrides):
    opt = tiny_stage2_options(demo_data, 100, stage1_weights)
    opt.update(is_train=True, dist=False, rank=0, world_size=1, **overrides)
    return build_model(opt), opt


def train_batch(opt):
    np.random.seed(0)
    random.seed(0)
    dataset = RefCUFEDDataset(dict(opt['datasets']['train'], phase='train', scale=4))
    return next(iter(DataLoader(dataset, batch_size=2)))


def test_net1_frozen_and_bit_identical_while_net2_and_critic_learn(demo_data, stage1_weights):
    model, opt = make_stage2_model(demo_data, stage1_weights)
    batch = train_batch(opt)
    net1_before = {k: v.clone() for k, v in model.reference_pipeline.stage1.state_dict().items()}
    net2_before = {k: v.clone() for k, v in model.net_g.state_dict().items()}
    d_before = {k: v.clone() for k, v in model.net_d.state_dict().items()}
    optimised = {id(p) for o in model.optimizers for g in o.param_groups for p in g['params']}
    assert not any(id(p) in optimised or p.requires_grad for p in model.reference_pipeline.stage1.parameters())
    for step in range(1, 4):
        model.feed_data(batch)
        model.optimize_parameters(step)
        assert all(p.grad is None for p in model.reference_pipeline.stage1.parameters())
    # Every Net2 parameter is in the graph. Gradients are non-zero from step 2 on (the offset/mask convs start at zero,
    # so step 1 gives their inputs none), except behind ReLUs that happen to be dead for this batch: this 16-channel net
    # has 3-unit DDF channel branches and 4-channel ESA branches.
    assert all(p.grad is not None for p in model.net_g.parameters())
    zero_grads = [n for n, p in model.net_g.named_parameters() if not p.grad.abs().sum() > 0]
    assert all('ddf_blocks' in n or '.esa.' in n for n in zero_grads)
    assert len(zero_grads) < 0.15 * len(list(model.net_g.parameters()))  # 26 of 220 with this seed and init
    assert not any(n.startswith(('reuse_fusion', 'align_', 'tail')) for n in zero_grads)
    assert all(torch.equal(v, net1_before[k]) for k, v in model.reference_pipeline.stage1.state_dict().items())
    assert not model.reference_pipeline.stage1.training
    changed = [n for n, p in model.net_g.named_parameters() if not torch.equal(p, net2_before[n])]
    assert len(changed) >= 0.75 * len(net2_before)  # the rest have zero or vanishing gradients at init (176 of 220)
    assert {'reuse_fusion_down_large.weight', 'reuse_fusion_up_large.weight', 'tail.2.weight'} <= set(changed)
    assert any(not torch.equal(v, d_before[k]) for k, v in model.net_d.state_dict().items())
    log = model.get_current_log()
    assert {'l_g_pix', 'l_g_percep', 'l_g_gan', 'l_d_real', 'l_d_fake', 'l_d_gp'} <= set(log)
    assert log['l_d_gp'] >= 0 and log['l_g_percep'] > 0


def test_net2_starts_from_stage1_except_fusion_convs(demo_data, stage1_weights):
    model, _ = make_stage2_model(demo_data, stage1_weights)
    stage1 = torch.load(stage1_weights, weights_only=True)['params']
    net2 = model.net_g.state_dict()
    assert all(torch.equal(net2[k], v) for k, v in stage1.items())
    assert sorted(set(net2) - set(stage1)) == [
        'reuse_fusion_down_large.bias', 'reuse_fusion_down_large.weight', 'reuse_fusion_up_large.bias',
        'reuse_fusion_up_large.weight'
    ]


def test_reused_feature_is_net1_aggregate_output(demo_data, stage1_weights):
    model, opt = make_stage2_model(demo_data, stage1_weights)
    model.feed_data(train_batch(opt))
    captured = []
    pipeline = model.reference_pipeline
    pipeline.stage1.aggregate_up_large.register_forward_hook(lambda m, a, out: captured.append(out))
    context = pipeline.reference_context(model.lq, model.lq_up, model.ref)
    restoration = pipeline.restore(model.net_g, model.lq, context)
    assert 'reuse_feat' not in context  # the reference context never runs Net1
    assert torch.equal(restoration.reuse_feat, captured[0])
    assert restoration.reuse_feat.shape == (2, 16, 64, 64)
    assert restoration.sr_stage1.shape == restoration.sr.shape == (2, 3, 64, 64)


def test_basicsr_test_model_and_the_inferencer_restore_identically(tiny_checkpoints):
    """One restoration path: the model of `basicsr test` and RefSRInferencer build the same networks from one two-stage
    YAML and checkpoint (random frozen parts drawn in the same order) and give the same SR and stage-1 SR."""
    opt = yaml.safe_load(open(tiny_checkpoints['stage2_yml']))
    sample = RefSRTestDataset(dict(opt['datasets']['test_1'], phase='test', scale=4))[1]
    batch = {key: value.unsqueeze(0) if torch.is_tensor(value) else [value] for key, value in sample.items()}
    torch.manual_seed(10)
    model = build_model(dict(opt, is_train=False, dist=False, rank=0, world_size=1))
    model.feed_data(batch)
    model.test()
    torch.manual_seed(10)
    inferencer = RefSRInferencer(tiny_checkpoints['stage2_yml'], tiny_checkpoints['stage2'])
    restoration = inferencer.restore(batch, None, inferencer.max_corr_elements)
    height, width = sample['gt'].shape[-2:]
    assert torch.equal(restoration.sr[..., :height, :width], model.output)
    assert torch.equal(restoration.sr_stage1[..., :height, :width], model.output_stage1)
    assert not torch.equal(model.output, model.output_stage1)


def test_warmup_steps_train_pixel_loss_only(demo_data, stage1_weights):
    model, opt = make_stage2_model(demo_data, stage1_weights)
    model.net_g_pretrain_steps = 1
    d_before = {k: v.clone() for k, v in model.net_d.state_dict().items()}
    model.feed_data(train_batch(opt))
    model.optimize_parameters(1)
    assert set(model.get_current_log()) == {'l_g_pix'}
    assert all(torch.equal(v, d_before[k]) for k, v in model.net_d.state_dict().items())


def ablation_options(demo_data, stage1_weights):
    """Stage 2 with ``feature_reuse: {enabled: false}``: Net2 is the plain stage-1 arch, from the stage-1 checkpoint."""
    opt = tiny_stage2_options(demo_data, 100, stage1_weights)
    opt.update(
        feature_reuse={'enabled': False},
        network_g=opt.pop('network_stage1'),
        is_train=True,
        dist=False,
        rank=0,
        world_size=1)
    opt['path'].pop('pretrain_network_stage1')
    opt['path']['ignore_resume_networks'].remove('network_stage1')
    return opt


def test_disabled_feature_reuse_trains_net2_with_all_losses_without_net1(demo_data, stage1_weights):
    opt = ablation_options(demo_data, stage1_weights)
    model = build_model(opt)
    assert model.reference_pipeline.stage1 is None
    contexts = []
    model.net_g.register_forward_pre_hook(lambda module, args: contexts.append(args[1]))
    model.feed_data(train_batch(opt))
    model.optimize_parameters(1)
    assert len(contexts) == 1 and 'reuse_feat' not in contexts[0] and 'sife_feat' in contexts[0]
    assert {'l_g_pix', 'l_g_percep', 'l_g_gan', 'l_d_real', 'l_d_fake', 'l_d_gp'} <= set(model.get_current_log())
    sample = RefSRTestDataset(dict(opt['datasets']['val'], phase='val', scale=4))[0]
    model.feed_data({key: value.unsqueeze(0) if torch.is_tensor(value) else [value] for key, value in sample.items()})
    model.test()
    assert model.output_stage1 is None and [label for label, _ in model.comparison_panels()
                                            ] == ['bicubic', 'SR', 'Ref', 'GT']
    # Net1's options are ignored, even a checkpoint path that does not exist
    opt = ablation_options(demo_data, stage1_weights)
    opt.update(network_stage1=opt['network_g'])
    opt['path']['pretrain_network_stage1'] = str(Path(stage1_weights).parent / 'missing.pth')
    assert build_model(opt).reference_pipeline.stage1 is None


@pytest.mark.parametrize('network_g', [
    'stage-2 arch', {
        'type': 'FeatureReuseNet',
        'base': tiny_networks()['network_g'],
        'fusion_targets': {
            'tail': 16
        },
        'reuse_channels': 16
    }
])
def test_disabled_feature_reuse_rejects_archs_that_need_the_reused_feature(demo_data, stage1_weights, network_g):
    opt = tiny_stage2_options(demo_data, 100, stage1_weights)
    opt.update(feature_reuse={'enabled': False}, is_train=True, dist=False, rank=0, world_size=1)
    if network_g != 'stage-2 arch':
        opt['network_g'] = network_g
        opt['path']['pretrain_network_g'] = None
    arch = 'FRFSRStage2Net' if network_g == 'stage-2 arch' else 'FeatureReuseNet'
    with pytest.raises(OptionError, match=rf'network_g: {arch} needs the reused feature.*feature_reuse.enabled: false'):
        build_model(opt)


def test_bad_reuse_source_is_named(demo_data, stage1_weights):
    with pytest.raises(OptionError, match="feature_reuse.source: FRFSRNet has no submodule 'nope'"):
        make_stage2_model(demo_data, stage1_weights, feature_reuse={'source': 'nope', 'port': 'output'})


def test_gradient_penalty_equals_direct_formula_on_toy_critic():
    weight = torch.randn(1, 3, 4, 5)

    def critic(x):  # D(x) = sum(w * x^2) per sample, so grad = 2 w x
        return (weight * x**2).flatten(1).sum(1, keepdim=True)

    real, fake = torch.randn(3, 3, 4, 5), torch.randn(3, 3, 4, 5)
    torch.manual_seed(7)
    penalty = LOSS_REGISTRY.get('WGANGradientPenaltyLoss')(loss_weight=10.0)(critic, real, fake)
    torch.manual_seed(7)
    alpha = torch.rand(3, 1, 1, 1)
    interpolated = alpha * real + (1 - alpha) * fake
    norms = (2 * weight * interpolated).flatten(1).norm(dim=1)
    assert torch.allclose(penalty, 10.0 * ((norms - 1)**2).mean())
    # the per-pixel channel norm (BasicSR's gradient_penalty_loss) is a different quantity
    pixel_norms = (2 * weight * interpolated).norm(dim=1)
    assert not torch.allclose(penalty, 10.0 * ((pixel_norms - 1)**2).mean())


def test_gradient_penalty_is_differentiable_for_the_critic():
    critic = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 1), torch.nn.Tanh())
    penalty = LOSS_REGISTRY.get('WGANGradientPenaltyLoss')()(critic, torch.randn(4, 3, 2, 2), torch.randn(4, 3, 2, 2))
    penalty.backward()
    assert critic[1].weight.grad is not None and critic[1].weight.grad.abs().sum() > 0


def test_perceptual_fro_loss_equals_direct_norm():
    loss_fn = LOSS_REGISTRY.get('FRFSRPerceptualLoss')({
        'relu2_1': 1.0,
        'relu3_1': 0.5
    },
                                                       pretrained=False,
                                                       perceptual_weight=1e-2)
    output, gt = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    loss, style = loss_fn(output, gt)
    feats_out, feats_gt = loss_fn.vgg(output), loss_fn.vgg(gt)
    expected = 1e-2 * (
        torch.norm(feats_out['relu2_1'] - feats_gt['relu2_1']) +
        0.5 * torch.norm(feats_out['relu3_1'] - feats_gt['relu3_1']))
    assert style is None and torch.allclose(loss, expected)


def c2_context(lq):
    encoder = ARCH_REGISTRY.get('FRFSRContrastiveEncoder')(pretrained=False)
    correspondence = ARCH_REGISTRY.get('FRFSRCorrespondence')(pretrained=False)
    lq_up = torch.nn.functional.interpolate(lq, scale_factor=4, mode='bicubic', align_corners=False)
    ref = torch.rand_like(lq_up)
    with torch.no_grad():
        return correspondence(*encoder(lq_up, ref), ref)


def test_feature_reuse_net_wraps_c2matching_as_identity_at_start(tmp_path):
    base_opt = {'type': 'C2MatchingRestorationNet', 'ngf': 8, 'n_blocks': 1, 'dcn_backend': 'pytorch'}
    stage1 = build_network(base_opt)
    torch.save({'params': stage1.state_dict()}, tmp_path / 'c2.pth')
    net2 = ARCH_REGISTRY.get('FeatureReuseNet')(
        base=base_opt, fusion_targets={
            'head.large': 72
        }, reuse_channels=8, pretrained_base=str(tmp_path / 'c2.pth'))
    lq = torch.rand(1, 3, 16, 16)
    context = c2_context(lq)
    with torch.no_grad():
        expected = stage1(lq, context)
        context['reuse_feat'] = torch.randn(1, 8, 64, 64)
        out = net2(lq, context)
    assert torch.equal(out, expected)  # zero-initialised fusion
    torch.nn.init.normal_(net2.fusions['head__large'].conv.weight, 0, 0.1)
    with torch.no_grad():
        assert not torch.allclose(net2(lq, context), expected)
    assert sum(p.numel() for p in net2.parameters()) - sum(p.numel() for p in stage1.parameters()) == 72 * 80 * 9 + 72


def test_feature_reuse_net_names_bad_target():
    with pytest.raises(OptionError, match="no submodule 'head.huge'"):
        ARCH_REGISTRY.get('FeatureReuseNet')(
            base={
                'type': 'C2MatchingRestorationNet',
                'ngf': 8,
                'n_blocks': 1
            }, fusion_targets={
                'head.huge': 16
            })


def test_non_finite_losses_skip_both_critic_and_generator_updates(demo_data, stage1_weights):
    model, opt = make_stage2_model(demo_data, stage1_weights)
    batch = train_batch(opt)
    batch['gt'] = torch.full_like(batch['gt'], float('inf'))
    g_before = {k: v.clone() for k, v in model.net_g.state_dict().items()}
    d_before = {k: v.clone() for k, v in model.net_d.named_parameters()}
    model.feed_data(batch)
    model.optimize_parameters(1)
    assert model.nonfinite_steps == {'net_d': 1, 'net_g': 1}
    assert all(torch.equal(v, g_before[k]) for k, v in model.net_g.state_dict().items())
    assert all(torch.equal(v, d_before[k]) for k, v in model.net_d.named_parameters())
