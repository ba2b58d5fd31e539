"""Operators: patch matching, flows, pre-offsets, deformable conv backends and the decoupled dynamic filter."""
import pytest
import torch
import torch.nn.functional as F
import torchvision

from frfsr_plugin.ops.ddf import ddf_mul, ddf_mul_unfold
from frfsr_plugin.ops.deform_conv import PreOffsetModulatedDeformConv, modulated_deform_conv2d
from frfsr_plugin.ops.flow import flow_to_pre_offsets, flow_warp, index_to_flow, upscale_flow
from frfsr_plugin.ops.patch_match import match_patches, match_patches_direct, matching_plan


def flow_from_features(feat_in, feat_ref, matcher=match_patches, **kwargs):
    max_idx, max_val = matcher(feat_in, feat_ref, **kwargs)
    return index_to_flow(max_idx, feat_ref.shape[-1] - 2), max_val


@pytest.mark.parametrize('matcher', [match_patches, match_patches_direct])
@pytest.mark.parametrize('shift', [(0, 0), (3, -2), (-4, 5)])
def test_matcher_recovers_known_shift(shift, matcher):
    dy, dx = shift
    big = torch.randn(2, 16, 40, 44)
    feat_in = big[:, :, 6:30, 6:34]
    feat_ref = big[:, :, 6 + dy:30 + dy, 6 + dx:34 + dx]
    flow, max_val = flow_from_features(feat_in, feat_ref, matcher)
    grid_h, grid_w = feat_in.shape[-2] - 2, feat_in.shape[-1] - 2
    # input patch at (y, x) equals the ref patch at (y - dy, x - dx) where that patch exists
    valid_y = slice(max(dy, 0), grid_h + min(dy, 0))
    valid_x = slice(max(dx, 0), grid_w + min(dx, 0))
    assert torch.all(flow[:, valid_y, valid_x, 0] == -dx)
    assert torch.all(flow[:, valid_y, valid_x, 1] == -dy)
    assert torch.allclose(max_val[:, valid_y, valid_x], torch.ones(()), atol=1e-4)
    # the 2-pixel bottom/right border is zero padding
    assert torch.all(flow[:, grid_h:] == 0) and torch.all(flow[:, :, grid_w:] == 0)


@pytest.mark.parametrize('matcher', [match_patches, match_patches_direct])
def test_matcher_recovers_patch_shuffle_and_chunking_is_exact(matcher):
    tile, tiles_per_side = 8, 4
    feat_in = torch.randn(1, 8, tile * tiles_per_side, tile * tiles_per_side)
    perm = torch.randperm(tiles_per_side**2)
    tiles = feat_in.unfold(2, tile, tile).unfold(3, tile, tile)  # (1, C, 4, 4, 8, 8)
    shuffled = tiles.reshape(1, 8, 16, tile, tile)[:, :, perm].reshape(1, 8, 4, 4, tile, tile)
    feat_ref = shuffled.permute(0, 1, 2, 4, 3, 5).reshape(feat_in.shape)
    flow, _ = flow_from_features(feat_in, feat_ref, matcher)
    # a 3x3 patch fully inside source tile t moved to ref tile position perm^-1(t)
    destination = torch.argsort(perm)
    checked = 0
    for y in range(feat_in.shape[-2] - 2):
        for x in range(feat_in.shape[-1] - 2):
            if y % tile > tile - 3 or x % tile > tile - 3:
                continue  # the patch straddles a tile border
            source = (y // tile) * tiles_per_side + x // tile
            ty, tx = divmod(int(destination[source]), tiles_per_side)
            assert flow[0, y, x].tolist() == [(tx - x // tile) * tile, (ty - y // tile) * tile]
            checked += 1
    assert checked == 16 * 36
    # a budget forcing many chunks gives the same matches
    chunked_idx, chunked_val = matcher(feat_in, feat_ref, max_corr_elements=900 * 7 * 32)
    full_idx, full_val = matcher(feat_in, feat_ref)
    assert torch.equal(chunked_idx, full_idx) and torch.allclose(chunked_val, full_val)


@pytest.mark.parametrize('matcher', [match_patches, match_patches_direct])
def test_matcher_rejects_tiny_features(matcher):
    with pytest.raises(ValueError, match='at least 3x3'):
        matcher(torch.randn(1, 4, 2, 8), torch.randn(1, 4, 8, 8))


def assert_same_matches_as_direct(feat_in, feat_ref, **kwargs):
    """Same argmax as the direct formulation wherever the direct top-2 scores are not a near tie."""
    fast_idx, fast_val = match_patches(feat_in, feat_ref, **kwargs)
    direct_idx, direct_val = match_patches_direct(feat_in, feat_ref)
    assert torch.allclose(fast_val, direct_val, atol=1e-5)
    patches_in = F.unfold(F.normalize(feat_in, dim=1), 3)
    patches_ref = F.unfold(F.normalize(feat_ref, dim=1), 3)
    patches_ref = patches_ref / (patches_ref.norm(dim=1, keepdim=True) + 1e-5)
    top2 = torch.bmm(patches_ref.transpose(1, 2), patches_in).topk(2, dim=1).values  # (B, 2, N_in)
    clear = (top2[:, 0] - top2[:, 1] > 1e-4).view_as(direct_idx)
    assert torch.equal(fast_idx[clear], direct_idx[clear])
    assert (fast_idx == direct_idx).float().mean() >= 0.999


def test_fast_matcher_equals_direct_on_random_features_with_zero_vectors_and_chunks():
    feat_in, feat_ref = torch.randn(2, 32, 13, 17), torch.randn(2, 32, 15, 11)
    assert_same_matches_as_direct(feat_in, feat_ref)  # unit ref vectors only: constant patch norm 3
    feat_ref[:, :, 4:6, 3:7] = 0  # all-zero feature vectors: their windows have patch norm < 3
    feat_in[:, :, 0:2, 0:3] = 0
    assert_same_matches_as_direct(feat_in, feat_ref)
    # the smallest plan: one ref patch row (3 feature rows) per chunk, one input row per block
    assert_same_matches_as_direct(feat_in, feat_ref, max_corr_elements=5 * 2 * 17 * 11 * 3)


@pytest.mark.parametrize('budget, plan', [(5 * 2 * 17 * 11 * 3, (1, 1)), (9000, (2, 2)), (2**20, (13, 13))])
def test_fast_matcher_chunks_and_blocks_give_identical_matches_within_budget(budget, plan):
    """Ref chunks and input-row blocks, with partial last ones, leave the matches unchanged; buffers fit the budget."""
    feat_in, feat_ref = torch.randn(2, 32, 13, 17), torch.randn(2, 32, 15, 11)
    ref_rows, block_rows, elements = matching_plan(2, (13, 17), (15, 11), budget)
    assert (ref_rows, block_rows) == plan and elements <= budget
    expected_idx, expected_val = match_patches(feat_in, feat_ref)
    idx, val = match_patches(feat_in, feat_ref, max_corr_elements=budget)
    assert torch.equal(idx, expected_idx) and torch.allclose(val, expected_val, atol=1e-6)


def test_fast_matcher_equals_direct_on_real_photo_features():
    from skimage import data as skimage_data

    from frfsr_plugin.archs.contrastive_encoder_arch import FRFSRContrastiveEncoder
    photo = torch.from_numpy(skimage_data.chelsea()[60:220, 100:320].copy()).permute(2, 0, 1)[None].float() / 255
    lq_up = F.interpolate(F.interpolate(photo, scale_factor=0.25, mode='bicubic'), scale_factor=4, mode='bicubic')
    ref = torch.roll(photo, shifts=(12, -20), dims=(2, 3))
    with torch.no_grad():
        feat_in, feat_ref = FRFSRContrastiveEncoder(pretrained=False)(lq_up, ref)
    assert_same_matches_as_direct(feat_in, feat_ref)


def test_upscale_flow_is_nearest_times_scale():
    flow = torch.randn(1, 5, 6, 2)
    up = upscale_flow(flow, 4)
    assert up.shape == (1, 20, 24, 2)
    assert torch.equal(up[0, 13, 22], flow[0, 3, 5] * 4)


def test_pre_offsets_match_direct_formula():
    scale = 2
    flow = torch.randn(2, 10, 12, 2)
    pre = flow_to_pre_offsets(flow, scale)
    assert pre.shape == (2, 18, 10, 12)
    for tap in range(9):
        i, j = divmod(tap, 3)
        for y in range(10):
            for x in range(12):
                # tap (i, j) reads the flow shifted down by scale*i rows and right by scale*j columns, zero filled
                src_y, src_x = y - scale * i, x - scale * j
                expected = flow[:, src_y, src_x] if src_y >= 0 and src_x >= 0 else torch.zeros(2, 2)
                assert torch.equal(pre[:, 2 * tap, y, x], expected[:, 1])  # dy
                assert torch.equal(pre[:, 2 * tap + 1, y, x], expected[:, 0])  # dx


def centre_tap_identity_dcn(channels):
    dcn = PreOffsetModulatedDeformConv(channels, channels, deformable_groups=8)
    with torch.no_grad():
        dcn.weight.zero_()
        dcn.weight[torch.arange(channels), torch.arange(channels), 1, 1] = 1.0
    return dcn


@pytest.mark.parametrize('scale', [1, 2, 4])
def test_pre_offset_dcn_samples_matched_ref_position(scale):
    """Spec 13.2: zero learned offsets + centre-tap identity kernel sample the Ref at p + flow (mask 0.5)."""
    dy, dx = 2, -3
    big = torch.randn(1, 16, 30, 30)
    feat_in, feat_ref = big[:, :, 5:25, 5:25], big[:, :, 5 + dy:25 + dy, 5 + dx:25 + dx]
    flow3, _ = flow_from_features(feat_in, feat_ref)
    flow = upscale_flow(flow3, scale)
    ref = torch.randn(1, 16, 20 * scale, 20 * scale)
    out = centre_tap_identity_dcn(16)(ref, torch.randn_like(ref), flow_to_pre_offsets(flow, scale))
    # centre tap reads the flow of the patch centred at p, i.e. at p - scale * (1, 1)
    lo, hi = scale * (1 + max(dy, 0) + 1), scale * (20 - 3 + min(dy, 0))
    lo_x, hi_x = scale * (1 + max(dx, 0) + 1), scale * (20 - 3 + min(dx, 0))
    expected = torch.roll(ref, shifts=(scale * dy, scale * dx), dims=(2, 3))
    assert torch.allclose(out[..., lo:hi, lo_x:hi_x], 0.5 * expected[..., lo:hi, lo_x:hi_x], atol=1e-5)


def test_dcn_offset_mask_branch_starts_at_zero():
    dcn = PreOffsetModulatedDeformConv(16, 16)
    assert dcn.conv_offset_mask.out_channels == 8 * 27
    assert torch.count_nonzero(dcn.conv_offset_mask.weight) == 0 and torch.count_nonzero(dcn.conv_offset_mask.bias) == 0


def dcn_inputs(integer_offsets, dtype=torch.float64):
    generator = torch.Generator().manual_seed(int(integer_offsets))
    offset = torch.randn(2, 8 * 18, 12, 14, generator=generator, dtype=dtype) * 2.5
    if integer_offsets:  # an untrained FAM samples at the integer pre-offset positions, the kinks of bilinear
        offset = offset.round()
    tensors = (torch.randn(2, 16, 12, 14, generator=generator,
                           dtype=dtype), offset, torch.rand(2, 8 * 9, 12, 14, generator=generator, dtype=dtype),
               torch.randn(24, 16, 3, 3, generator=generator,
                           dtype=dtype), torch.randn(24, generator=generator, dtype=dtype))
    return [tensor.requires_grad_() for tensor in tensors]


@pytest.mark.parametrize('integer_offsets', [False, True])
@pytest.mark.parametrize('backend', ['torchvision', 'pytorch'])
def test_dcn_backward_equals_torchvision_autograd(backend, integer_offsets):
    """Our backward (ModulatedDeformConvFunction) against torchvision's own: all five gradients, float64."""
    x, offset, mask, weight, bias = dcn_inputs(integer_offsets)
    expected = torchvision.ops.deform_conv2d(x, offset, weight, bias, padding=1, mask=mask)
    ours = modulated_deform_conv2d(x, offset, mask, weight, bias, backend=backend)
    assert type(ours.grad_fn).__name__ == 'ModulatedDeformConvFunctionBackward'
    assert torch.allclose(ours, expected, rtol=0, atol=1e-12)
    grad_out = torch.randn_like(expected)
    grads_expected = torch.autograd.grad(expected, (x, offset, mask, weight, bias), grad_out)
    grads_ours = torch.autograd.grad(ours, (x, offset, mask, weight, bias), grad_out)
    for name, a, b in zip(('x', 'offset', 'mask', 'weight', 'bias'), grads_expected, grads_ours):
        assert torch.allclose(a, b, rtol=0, atol=1e-10), name


def test_dcn_output_window_backward_equals_cropped_full_conv():
    """Tiled restoration's output window: gradients equal torchvision's full conv with grad_out zero outside it."""
    x, offset, mask, weight, bias = dcn_inputs(integer_offsets=False)
    top, left, height, width = 3, 5, 6, 7
    window = (slice(None), slice(None), slice(top, top + height), slice(left, left + width))
    full = torchvision.ops.deform_conv2d(x, offset, weight, bias, padding=1, mask=mask)
    ours = modulated_deform_conv2d(x, offset[window], mask[window], weight, bias, origin=(top, left))
    assert torch.allclose(ours, full[window], rtol=0, atol=1e-12)
    grad_window = torch.randn_like(ours)
    grad_full = torch.zeros_like(full)
    grad_full[window] = grad_window
    x_f, offset_f, mask_f, weight_f, bias_f = torch.autograd.grad(full, (x, offset, mask, weight, bias), grad_full)
    x_o, offset_o, mask_o, weight_o, bias_o = torch.autograd.grad(ours, (x, offset, mask, weight, bias), grad_window)
    for expected, got in ((x_f, x_o), (weight_f, weight_o), (bias_f, bias_o), (offset_f, offset_o), (mask_f, mask_o)):
        assert torch.allclose(expected, got, rtol=0, atol=1e-10)


def test_dcn_backward_float32_tracks_float64():
    inputs64 = dcn_inputs(integer_offsets=True)
    inputs32 = [tensor.detach().float().requires_grad_() for tensor in inputs64]
    grads = []
    for inputs in (inputs64, inputs32):
        out = modulated_deform_conv2d(*inputs)
        grads.append(torch.autograd.grad(out.square().sum(), inputs))
    for exact, single in zip(*grads):
        assert torch.allclose(single.double(), exact, rtol=1e-4, atol=1e-3 * exact.abs().max())


def test_unknown_dcn_backend_is_rejected():
    with pytest.raises(ValueError, match='dcn_backend'):
        PreOffsetModulatedDeformConv(8, 8, backend='cuda_ext')


def test_mmcv_backend_is_bit_identical_to_torchvision():
    pytest.importorskip('mmcv.ops', reason='mmcv with compiled ops is optional')
    x, offset = torch.randn(1, 16, 10, 10), torch.randn(1, 8 * 18, 10, 10) * 2
    mask, weight, bias = torch.rand(1, 72, 10, 10), torch.randn(16, 16, 3, 3), torch.randn(16)
    assert torch.equal(
        modulated_deform_conv2d(x, offset, mask, weight, bias, backend='mmcv'),
        modulated_deform_conv2d(x, offset, mask, weight, bias, backend='torchvision'))


def test_ddf_equals_direct_nine_tap_sum():
    x = torch.randn(2, 5, 7, 9, dtype=torch.float64)
    channel_filter = torch.randn(2, 5, 9, dtype=torch.float64)
    spatial_filter = torch.randn(2, 9, 7, 9, dtype=torch.float64)
    expected = torch.zeros_like(x)
    padded = F.pad(x, (1, 1, 1, 1))
    for b in range(2):
        for c in range(5):
            for y in range(7):
                for x_ in range(9):
                    window = padded[b, c, y:y + 3, x_:x_ + 3].reshape(9)
                    expected[b, c, y, x_] = (window * channel_filter[b, c] * spatial_filter[b, :, y, x_]).sum()
    assert torch.allclose(ddf_mul(x, channel_filter, spatial_filter), expected)


def test_flow_warp_integer_shift_and_zero_padding():
    x = torch.randn(1, 3, 6, 7)
    flow = torch.zeros(1, 6, 7, 2)
    flow[..., 0] = 2  # sample two pixels to the right
    warped = flow_warp(x, flow)
    assert torch.allclose(warped[..., :5], x[..., 2:], atol=1e-6)
    assert torch.all(warped[..., 5:] == 0)


def test_memory_lean_ddf_matches_unfold_formulation_and_passes_gradcheck():
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64, requires_grad=True)
    channel_filter = torch.randn(2, 3, 9, dtype=torch.float64, requires_grad=True)
    spatial_filter = torch.randn(2, 9, 5, 6, dtype=torch.float64, requires_grad=True)
    assert torch.allclose(ddf_mul(x, channel_filter, spatial_filter), ddf_mul_unfold(x, channel_filter, spatial_filter))
    assert torch.autograd.gradcheck(ddf_mul, (x, channel_filter, spatial_filter))
    grad_out = torch.randn(2, 3, 5, 6, dtype=torch.float64)
    ours = torch.autograd.grad(
        ddf_mul(x, channel_filter, spatial_filter), (x, channel_filter, spatial_filter), grad_out)
    reference = torch.autograd.grad(
        ddf_mul_unfold(x, channel_filter, spatial_filter), (x, channel_filter, spatial_filter), grad_out)
    for a, b in zip(ours, reference):
        assert torch.allclose(a, b)
