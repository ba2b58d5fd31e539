"""Architectures: registry, parameter counts of the full-size networks, forward shapes and size checks."""
import pytest
import torch
import torch.nn.functional as F
from basicsr.utils.registry import ARCH_REGISTRY

from frfsr_plugin.archs.aggregation import ESA
from frfsr_plugin.utils.checkpoint import PretrainedWeightsError


def count(net):
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize('arch, kwargs, expected', [
    ('FRFSRNet', {}, 13_487_071),
    ('FRFSRNet', {
        'sife_channels': 0
    }, 13_413_279),
    ('FRFSRNet', {
        'use_esa': False
    }, 12_552_671),
    ('FRFSRNet', {
        'num_ddf_blocks': 0
    }, 13_310_011),
    ('FRFSRNet', {
        'num_ddf_blocks': 0,
        'use_esa': False
    }, 12_375_611),
    ('FRFSRSIFENet', {
        'pretrained': False
    }, 16_697_987),
    ('FRFSRContrastiveEncoder', {
        'pretrained': False
    }, 1_110_656),
    ('FRFSRCorrespondence', {
        'pretrained': False
    }, 555_328),
])
def test_parameter_counts_match_spec(arch, kwargs, expected):
    assert count(ARCH_REGISTRY.get(arch)(**kwargs)) == expected


def test_generator_init_follows_official_code():
    net = ARCH_REGISTRY.get('FRFSRNet')(num_feat=16, num_res_blocks=1, num_ddf_blocks=1)
    dcn = net.align_down_large.dcn
    bound = 1 / (64 * 9)**0.5
    assert dcn.weight.abs().max() <= bound and dcn.weight.abs().max() > 0.5 * bound
    assert torch.count_nonzero(dcn.conv_offset_mask.weight) == 0
    head = net.aggregate_up_small.head.weight
    assert abs(head.std().item() - 0.02) < 0.002 and torch.count_nonzero(net.aggregate_up_small.head.bias) == 0


def tiny_parts(sife_channels=8):
    encoder = ARCH_REGISTRY.get('FRFSRContrastiveEncoder')(pretrained=False)
    correspondence = ARCH_REGISTRY.get('FRFSRCorrespondence')(pretrained=False)
    sife = ARCH_REGISTRY.get('FRFSRSIFENet')(pretrained=False, num_feat=sife_channels, num_block=1, num_grow_ch=4)
    generator = ARCH_REGISTRY.get('FRFSRNet')(
        num_feat=8, num_res_blocks=1, num_ddf_blocks=1, sife_channels=sife_channels, dcn_backend='pytorch')
    return encoder, correspondence, sife, generator


def run_pipeline(lq, ref):
    encoder, correspondence, sife, generator = tiny_parts()
    lq_up = F.interpolate(lq, scale_factor=4, mode='bicubic', align_corners=False)
    with torch.no_grad():
        context = correspondence(*encoder(lq_up, ref), ref)
        context['sife_feat'] = sife(lq)
    return context, generator(lq, context)


def test_forward_shapes_at_training_size():
    lq, ref = torch.rand(2, 3, 40, 40), torch.rand(2, 3, 160, 160)
    context, sr = run_pipeline(lq, ref)
    assert [tuple(p.shape) for p in context['pre_offsets']] == [(2, 18, 160, 160), (2, 18, 80, 80), (2, 18, 40, 40)]
    assert [tuple(f.shape) for f in context['ref_feats']] == [(2, 64, 160, 160), (2, 128, 80, 80), (2, 256, 40, 40)]
    assert [f.shape for f in context['warped_ref_feats']] == [f.shape for f in context['ref_feats']]
    assert context['sife_feat'].shape == (2, 8, 40, 40)
    assert sr.shape == (2, 3, 160, 160) and torch.isfinite(sr).all()


def test_forward_non_square_pair_with_differently_sized_ref():
    """A 92x128 GT with a 120x100 Ref: both are zero-padded to 120x128 (spec 9.3) and SR is cropped back."""
    gt_h, gt_w, ref_h, ref_w = 92, 128, 120, 100
    pad_h, pad_w = max(gt_h, ref_h), max(gt_w, ref_w)
    lq = F.pad(torch.rand(1, 3, gt_h // 4, gt_w // 4), (0, (pad_w - gt_w) // 4, 0, (pad_h - gt_h) // 4))
    ref = F.pad(torch.rand(1, 3, ref_h, ref_w), (0, pad_w - ref_w, 0, pad_h - ref_h))
    _, sr = run_pipeline(lq, ref)
    assert sr.shape == (1, 3, pad_h, pad_w)
    assert sr[..., :gt_h, :gt_w].shape == (1, 3, gt_h, gt_w)


def test_ref_of_its_own_size_gives_a_context_on_the_lr_grid():
    """A 64x80 Ref for a 64x64 HR canvas: matched on its own grid, sampled whole (tests/test_reference_sets.py)."""
    encoder, correspondence, _, _ = tiny_parts()
    lq_up, ref = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 80)
    with torch.no_grad():  # as the reference pipeline runs it
        context = correspondence(*encoder(lq_up, ref), ref)
    assert [tuple(p.shape) for p in context['pre_offsets']] == [(1, 18, 64, 64), (1, 18, 32, 32), (1, 18, 16, 16)]
    assert [tuple(f.local.shape) for f in context['ref_feats']] == [(1, 64, 64, 64), (1, 128, 32, 32), (1, 256, 16, 16)]
    assert [tuple(f.full.shape) for f in context['ref_feats']] == [(1, 64, 64, 80), (1, 128, 32, 40), (1, 256, 16, 20)]
    assert [tuple(f.shape) for f in context['warped_ref_feats']] == [(1, 64, 64, 64), (1, 128, 32, 32),
                                                                     (1, 256, 16, 16)]


def test_too_small_lr_is_rejected():
    *_, generator = tiny_parts()
    with pytest.raises(ValueError, match='at least 15x15'):
        generator(torch.rand(1, 3, 14, 20), {'pre_offsets': (), 'ref_feats': (), 'warped_ref_feats': ()})


def test_missing_weights_file_names_file_and_content(tmp_path):
    missing = tmp_path / 'feature_extraction.pth'
    with pytest.raises(PretrainedWeightsError, match='feature_extraction.pth.*not found.*contrastive texture encoder'):
        ARCH_REGISTRY.get('FRFSRContrastiveEncoder')(pretrained=str(missing))
    with pytest.raises(PretrainedWeightsError, match='VGG19 ImageNet'):
        ARCH_REGISTRY.get('FRFSRCorrespondence')(pretrained=str(tmp_path / 'vgg19.pth'))
    with pytest.raises(PretrainedWeightsError, match='RRDBNet'):
        ARCH_REGISTRY.get('FRFSRSIFENet')()


def test_local_weights_load_and_mismatches_are_named(tmp_path):
    source = ARCH_REGISTRY.get('FRFSRSIFENet')(pretrained=False, num_feat=8, num_block=1, num_grow_ch=4)
    path = tmp_path / 'rrdb.pth'
    torch.save({'params': source.state_dict()}, path)
    loaded = ARCH_REGISTRY.get('FRFSRSIFENet')(pretrained=str(path), num_feat=8, num_block=1, num_grow_ch=4)
    assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(), loaded.state_dict().values()))
    with pytest.raises(PretrainedWeightsError, match='missing keys.*body.1'):
        ARCH_REGISTRY.get('FRFSRSIFENet')(pretrained=str(path), num_feat=8, num_block=2, num_grow_ch=4)


def test_vgg19_loads_subset_of_torchvision_file(tmp_path):
    import torchvision
    full = torchvision.models.vgg19(weights=None)
    path = tmp_path / 'vgg19.pth'
    torch.save(full.state_dict(), path)
    correspondence = ARCH_REGISTRY.get('FRFSRCorrespondence')(pretrained=str(path))
    assert torch.equal(correspondence.vgg.features[10].weight, full.features[10].weight)
    assert not any(p.requires_grad for p in correspondence.parameters())


def saved_bytes(fn, *inputs):
    """Bytes of the distinct storages autograd keeps for backward while ``fn(*inputs)`` runs."""
    storages = {}

    def pack(tensor):
        storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        out = fn(*inputs)
    return out, sum(storages.values())


def test_esa_recomputes_its_attention_map_with_identical_gradients():
    torch.manual_seed(0)
    esa = ESA(16)
    x = torch.randn(2, 16, 30, 34, requires_grad=True)

    def direct(x):  # the ESA formula with every intermediate kept by autograd
        c1_ = esa.conv1(x)
        pooled = F.max_pool2d(esa.conv2(c1_), kernel_size=7, stride=3)
        c3 = F.relu(esa.conv3(F.relu(esa.conv_max(pooled))))
        c3 = F.interpolate(esa.conv3_(c3), size=x.shape[-2:], mode='bilinear', align_corners=False)
        return x * torch.sigmoid(esa.conv4(c3 + esa.conv_f(c1_)))

    ours, ours_bytes = saved_bytes(esa, x)
    expected, expected_bytes = saved_bytes(direct, x)
    assert torch.equal(ours, expected)
    grad_out = torch.randn_like(ours)
    ours_grads = torch.autograd.grad(ours, [x] + list(esa.parameters()), grad_out)
    expected_grads = torch.autograd.grad(expected, [x] + list(esa.parameters()), grad_out)
    for a, b in zip(ours_grads, expected_grads):
        assert torch.allclose(a, b, rtol=0, atol=1e-6)
    assert expected_bytes - ours_bytes >= x.numel() * 4  # the (B, C, H, W) sigmoid map is not kept
