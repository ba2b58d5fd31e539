"""Real-world (Real-ESRGAN) degradation of the LR side: options, kernels, the batched pipeline and each of its
switches, the datasets and models that use it, the fixed degraded test set, and the shipped realworld YAMLs through
``basicsr train`` / ``basicsr test`` on demo photos."""
import copy
import glob
import importlib.util
import subprocess
import sys
import types
from os import path as osp

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from basicsr.models import build_model
from basicsr.utils import set_random_seed
from basicsr.utils.img_process_util import filter2D
from helpers import encoder_options, tiny_networks, tiny_train_options, write_yaml
from PIL import Image
from torch.utils.data import default_collate

from frfsr_plugin.archs.contrastive_encoder_arch import FRFSRContrastiveEncoder
from frfsr_plugin.cli.demo_data import build_cufed5_like_set, build_train_set
from frfsr_plugin.data.contrastive_dataset import ContrastiveHomographyDataset
from frfsr_plugin.data.cufed_dataset import RefCUFEDDataset
from frfsr_plugin.data.realworld_degradation import (DEFAULTS, FINAL_SINC_SIZE, KERNEL_BATCH_KEYS,
                                                     draw_degradation_kernels, parse_realworld_options,
                                                     resolved_settings)
from frfsr_plugin.data.refsr_test_dataset import RefSRTestDataset
from frfsr_plugin.data.transforms import make_lr_pair, mod_crop, pad_to, pil_bicubic_resize, read_image_rgb
from frfsr_plugin.ops import realworld_degradation as pipeline
from frfsr_plugin.ops.realworld_degradation import (RESIZE_MODES, RealWorldDegradation, filter2d, quantize_8bit,
                                                    upsample_like_pil)
from frfsr_plugin.utils.comparison import GAP, LABEL_HEIGHT
from frfsr_plugin.utils.errors import InputSizeError, MissingFileError, OptionError

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CROP = 80  # demo crop side: the smallest multiple of 4 that Real-ESRGAN's x4 values can degrade is 76
TRAIN_YAMLS = ('frfsr_stage1_realworld.yml', 'frfsr_stage2_realworld.yml', 'texture_encoder_student_realworld.yml')
BICUBIC_KEYS = {'gt', 'lq', 'lq_up', 'ref', 'lq_path', 'gt_path', 'ref_path'}


def read_yaml(name):
    with open(osp.join(ROOT, 'options', name), encoding='utf-8') as file:
        return yaml.safe_load(file)


def to_uint8(tensor):
    """(3, H, W) float tensor in [0, 1] -> (H, W, 3) uint8 array."""
    return np.round(tensor.permute(1, 2, 0).numpy() * 255).astype(np.uint8)


def is_8bit(tensor):
    """Values in [0, 1] on the 256 levels of an 8-bit image."""
    levels = tensor * 255
    return bool((levels - levels.round()).abs().max() < 1e-4 and tensor.min() >= 0 and tensor.max() <= 1)


def load_tool(name='make_degraded_testset'):
    spec = importlib.util.spec_from_file_location(name, osp.join(ROOT, 'tools', f'{name}.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


@pytest.fixture(scope='module')
def demo_root(tmp_path_factory):
    """CUFED-like train pairs (CROP-pixel crops), a CUFED5-like test set and its degraded copy (seed 0)."""
    root = tmp_path_factory.mktemp('realworld')
    build_train_set(str(root / 'train'), CROP, crops_per_photo=2)
    build_cufed5_like_set(str(root / 'test'), groups_per_photo=1)
    assert load_tool().main(['--src', str(root / 'test'), '--dst', str(root / 'test_realworld'), '--seed', '0']) == 0
    return root


def cufed_dataset(root, **extra):
    return RefCUFEDDataset({
        'dataroot_gt': str(root / 'train' / 'input'),
        'dataroot_ref': str(root / 'train' / 'ref'),
        'gt_size': CROP,
        'phase': 'train',
        'scale': 4,
        **extra
    })


def homography_dataset(root, **extra):
    return ContrastiveHomographyDataset({
        'dataroot_in': str(root / 'train' / 'input'),
        'gt_size': CROP,
        'phase': 'train',
        'scale': 4,
        **extra
    })


def collated(dataset, seed, count=2):
    """The first ``count`` samples drawn after seeding BasicSR's generators, as one batch."""
    set_random_seed(seed)
    return default_collate([dataset[index] for index in range(count)])


def degrade(options, hr, seed):
    """Seeded kernels and pipeline run for an HR batch (B, 3, H, W)."""
    set_random_seed(seed)
    kernels = default_collate([draw_degradation_kernels(options) for _ in range(hr.shape[0])])
    return RealWorldDegradation(options, 4, 'cpu')(hr, *(kernels[key] for key in KERNEL_BATCH_KEYS))


# ----------------------------------------------------------------------------------------------- options, kernels


@pytest.mark.parametrize('yaml_name', TRAIN_YAMLS)
def test_realworld_yamls_spell_out_real_esrgan_x4_values(yaml_name):
    block = read_yaml(yaml_name)['datasets']['train']['realworld_degradation']
    assert set(block) == set(DEFAULTS)
    assert resolved_settings(block) == resolved_settings({})


def test_realworld_yamls_validate_and_test_on_the_degraded_copy():
    for name in ('frfsr_stage1_realworld.yml', 'frfsr_stage2_realworld.yml'):
        assert read_yaml(name)['datasets']['val']['dataroot_lq'] == 'datasets/CUFED5_realworld/lq'
    for name in ('test_frfsr_cufed5_realworld.yml', 'test_frfsr_stage2_cufed5_realworld.yml'):
        assert read_yaml(name)['datasets']['test_1']['dataroot_lq'] == 'datasets/CUFED5_realworld/lq'
    stage2 = read_yaml('frfsr_stage2_realworld.yml')['path']
    assert stage2['pretrain_network_stage1'] == 'experiments/FRFSR_stage1_realworld_CUFED/models/net_g_latest.pth'
    assert read_yaml('frfsr_stage1.yml')['datasets']['train'].get('realworld_degradation') is None  # off by default


# yapf: disable
@pytest.mark.parametrize('block, message', [
    ({'noise_rnage': [1, 30]}, "unknown option 'realworld_degradation.noise_rnage'; did you mean 'noise_range'?"),
    ({'second_blur_prob': 1.5}, "option 'realworld_degradation.second_blur_prob' must be a probability in [0, 1]"),
    ({'resize_range': [0.5, 0.9]}, "'realworld_degradation.resize_range' must be [low, high] with 0 < low <= 1 <="),
    ({'resize_prob2': [1, 1]}, "'realworld_degradation.resize_prob2' must be three non-negative weights"),
    ({'jpeg_range2': [0, 95]}, "'realworld_degradation.jpeg_range2' must be [low, high] JPEG qualities"),
    ({'blur_kernel_size': 20}, "'realworld_degradation.blur_kernel_size' must be an odd integer in [7, 21]"),
    ({'kernel_list': ['iso', 'box']}, "'realworld_degradation.kernel_list' must be a non-empty list of kernel types"),
    ({'kernel_prob2': [1, 1]}, "'realworld_degradation.kernel_prob2' needs one weight per entry of 'kernel_list2' (6)"),
    ({'blur_sigma': [1, 1]}, "'realworld_degradation.blur_sigma' must be [low, high] with 0 < low < high"),
    ({'noise_prob': True}, "'realworld_degradation.noise_prob' must be a probability"),
    ('yes', "option 'realworld_degradation' must be a mapping of Real-ESRGAN degradation options or null"),
])
# yapf: enable
def test_bad_options_give_one_line_errors_naming_the_key(block, message):
    with pytest.raises(OptionError) as info:
        parse_realworld_options(block)
    assert message in str(info.value) and '\n' not in str(info.value)


def test_datasets_reject_crops_too_small_and_validation_use(demo_root):
    with pytest.raises(InputSizeError, match=r"^option 'gt_size': HR size 64x64 .* at least 76 "):
        cufed_dataset(demo_root, gt_size=64, realworld_degradation={})
    cufed_dataset(demo_root, gt_size=64, realworld_degradation={'resize_range': [0.2, 1.5]})  # 11 / 0.2 -> 56
    with pytest.raises(OptionError, match="'realworld_degradation' is for training datasets only"):
        homography_dataset(demo_root, phase='val', realworld_degradation={})


def test_kernels_follow_their_options():
    set_random_seed(0)
    options = parse_realworld_options({
        'blur_kernel_size': 11,
        'kernel_list': ['iso'],
        'kernel_prob': [1],
        'sinc_prob': 0,
        'sinc_prob2': 1,
        'final_sinc_prob': 0
    })
    pulse = torch.zeros(FINAL_SINC_SIZE, FINAL_SINC_SIZE)
    pulse[FINAL_SINC_SIZE // 2, FINAL_SINC_SIZE // 2] = 1
    for _ in range(4):
        kernels = draw_degradation_kernels(options)
        iso, sinc, final = (kernels[key] for key in KERNEL_BATCH_KEYS)
        assert iso.shape == (11, 11) and sinc.shape == (21, 21) and all(k.dtype == torch.float32 for k in (iso, sinc))
        assert torch.allclose(iso, iso.T, atol=1e-7) and torch.allclose(iso, iso.flip(0), atol=1e-7)
        assert iso.min() >= 0 and sinc.min() < 0  # Gaussian vs Bessel sinc with negative lobes
        assert abs(float(iso.sum()) - 1) < 1e-5 and abs(float(sinc.sum()) - 1) < 1e-5
        assert torch.equal(final, pulse)
    final = draw_degradation_kernels(parse_realworld_options({'final_sinc_prob': 1}))['sinc_kernel']
    assert final.shape == (21, 21) and final.min() < 0 and abs(float(final.sum()) - 1) < 1e-5


# ----------------------------------------------------------------------------------------------------- the pipeline


def test_degraded_lr_has_lr_shape_8bit_values_and_leaves_hr_untouched(demo_root):
    options = parse_realworld_options({})
    hr = collated(cufed_dataset(demo_root), 0, count=3)['gt']
    hr_before = hr.clone()
    bicubic = F.interpolate(hr, scale_factor=0.25, mode='bicubic', antialias=True)
    for seed in range(6):  # different stage draws: resize up/down/keep, Gaussian/Poisson, grey noise, order
        lq = degrade(options, hr, seed)
        assert lq.shape == (3, 3, CROP // 4, CROP // 4) and lq.dtype == torch.float32 and is_8bit(lq)
        assert (lq - bicubic).abs().mean() > 2 / 255
    assert torch.equal(hr, hr_before)


def test_fixed_seed_gives_identical_lr(demo_root):
    options = parse_realworld_options({})
    hr = collated(cufed_dataset(demo_root), 0)['gt']
    assert torch.equal(degrade(options, hr, 3), degrade(options, hr, 3))
    assert not torch.equal(degrade(options, hr, 3), degrade(options, hr, 4))


@pytest.fixture
def stage_trace(monkeypatch):
    """Runs the pipeline with every BasicSR operation spied on; returns the list of stages that ran, in order."""

    def run(overrides, hr, seed=0):
        options = parse_realworld_options(overrides)
        set_random_seed(seed)
        kernels = default_collate([draw_degradation_kernels(options) for _ in range(hr.shape[0])])
        events = []

        def spy(function, describe):

            def wrapper(*args, **kwargs):
                events.append(describe(*args))
                return function(*args, **kwargs)

            return wrapper

        kernel_names = {id(kernels[key]): key for key in KERNEL_BATCH_KEYS}
        monkeypatch.setattr(pipeline, 'filter2d', spy(filter2d, lambda img, kernel: 'blur:' + kernel_names[id(kernel)]))
        monkeypatch.setattr(pipeline, 'F', types.SimpleNamespace(interpolate=spy(F.interpolate, lambda img: 'resize')))
        for name, event in (('random_add_gaussian_noise_pt', 'gaussian'), ('random_add_poisson_noise_pt', 'poisson')):
            monkeypatch.setattr(pipeline, name, spy(getattr(pipeline, name), lambda img, event=event: event))
        degradation = RealWorldDegradation(options, 4, 'cpu')
        degradation.jpeger = spy(degradation.jpeger, lambda img: 'jpeg')
        lq = degradation(hr, *(kernels[key] for key in KERNEL_BATCH_KEYS))
        assert lq.shape[-2:] == (hr.shape[-2] // 4, hr.shape[-1] // 4) and is_8bit(lq)
        return events

    return run


# Every stage on and deterministic (resize down, Gaussian noise), then one switch at a time.
ALL_ON = {'resize_prob': [0, 1, 0], 'resize_prob2': [0, 1, 0], 'second_blur_prob': 1, 'gaussian_noise_prob': 1,
          'gaussian_noise_prob2': 1}  # yapf: disable
ROUND1 = ['blur:kernel1', 'resize', 'gaussian', 'jpeg']
ROUND2 = ['blur:kernel2', 'resize', 'gaussian']
FINAL = [['resize', 'blur:sinc_kernel', 'jpeg'], ['jpeg', 'resize', 'blur:sinc_kernel']]  # either order


def without(stages, *removed):
    stages = list(stages)
    for stage in removed:
        stages.remove(stage)
    return stages


# yapf: disable
@pytest.mark.parametrize('switch, round1, round2, finals', [
    ({}, ROUND1, ROUND2, FINAL),
    ({'blur_prob': 0}, without(ROUND1, 'blur:kernel1'), ROUND2, FINAL),
    ({'resize_prob': [0, 0, 1]}, without(ROUND1, 'resize'), ROUND2, FINAL),
    ({'noise_prob': 0}, without(ROUND1, 'gaussian'), ROUND2, FINAL),
    ({'gaussian_noise_prob': 0}, ['blur:kernel1', 'resize', 'poisson', 'jpeg'], ROUND2, FINAL),
    ({'jpeg_prob': 0}, without(ROUND1, 'jpeg'), ROUND2, FINAL),
    ({'first_order_prob': 0}, [], ROUND2, FINAL),
    ({'second_blur_prob': 0}, ROUND1, without(ROUND2, 'blur:kernel2'), FINAL),
    ({'resize_prob2': [0, 0, 1]}, ROUND1, ROUND2, [['blur:sinc_kernel', 'jpeg'], ['jpeg', 'blur:sinc_kernel']]),
    ({'noise_prob2': 0}, ROUND1, without(ROUND2, 'gaussian'), FINAL),
    ({'gaussian_noise_prob2': 0}, ROUND1, ['blur:kernel2', 'resize', 'poisson'], FINAL),
    ({'jpeg_prob2': 0}, ROUND1, ROUND2, [['resize', 'blur:sinc_kernel']]),
    ({'second_order_prob': 0}, ROUND1, [], [['resize', 'blur:sinc_kernel']]),
    ({'first_order_prob': 0, 'second_order_prob': 0}, [], [], [['resize', 'blur:sinc_kernel']]),
])
# yapf: enable
def test_each_stage_switch_runs_or_skips_exactly_its_stages(stage_trace, demo_root, switch, round1, round2, finals):
    hr = collated(cufed_dataset(demo_root), 0)['gt']
    for seed in range(2):
        assert stage_trace({**ALL_ON, **switch}, hr, seed) in [round1 + round2 + final for final in finals]


def test_with_every_stage_off_the_lr_is_a_plain_resize_and_the_sinc_switch_acts(demo_root):
    hr = collated(cufed_dataset(demo_root), 0)['gt']
    lr_size = (CROP // 4, CROP // 4)
    resized = {mode: F.interpolate(hr, size=lr_size, mode=mode) for mode in RESIZE_MODES}
    plain = [quantize_8bit(img) for img in resized.values()]
    for seed in range(3):
        lq = degrade(
            parse_realworld_options({
                'first_order_prob': 0,
                'second_order_prob': 0,
                'final_sinc_prob': 0
            }), hr, seed)
        assert any(torch.equal(lq, candidate) for candidate in plain)
        sinc_options = parse_realworld_options({'first_order_prob': 0, 'second_order_prob': 0, 'final_sinc_prob': 1})
        set_random_seed(seed)
        sinc = torch.stack([draw_degradation_kernels(sinc_options)['sinc_kernel'] for _ in range(hr.shape[0])])
        set_random_seed(seed)
        lq = RealWorldDegradation(sinc_options, 4, 'cpu')(hr, sinc, sinc, sinc)
        filtered = [quantize_8bit(filter2d(img, sinc)) for img in resized.values()]
        assert any(torch.equal(lq, candidate) for candidate in filtered)
        assert not any(torch.equal(lq, candidate) for candidate in plain)


def test_filter2d_fixes_basicsr_filter2d_on_channels_last_inputs():
    """The one BasicSR 1.4.2 function wrapped: its .view fails on the channels-last layout DiffJPEG returns."""
    img = torch.rand(2, 16, 16, 3).permute(0, 3, 1, 2)  # what DiffJPEG returns
    kernel = torch.rand(2, 5, 5)
    with pytest.raises(RuntimeError, match='view size is not compatible'):
        filter2D(img, kernel)
    assert torch.equal(filter2d(img, kernel), filter2D(img.contiguous(), kernel))


def test_upsample_like_pil_matches_pil_bicubic(demo_root):
    rng = np.random.default_rng(0)
    lrs = [
        rng.integers(0, 256, (30, 50, 3), dtype=np.uint8),
        make_lr_pair(read_image_rgb(str(demo_root / 'test' / '000_0.png')), 4)[0]
    ]
    for lr in lrs:
        tensor = torch.from_numpy(np.ascontiguousarray(lr.transpose(2, 0, 1))).float().unsqueeze(0) / 255.
        ours = to_uint8(upsample_like_pil(tensor, 4)[0]).astype(int)
        pil = pil_bicubic_resize(lr, (lr.shape[0] * 4, lr.shape[1] * 4)).astype(int)
        assert np.abs(ours - pil).max() <= 1 and (ours != pil).mean() < 0.01


# ------------------------------------------------------------------------------------------------ datasets, models


def sample_at(dataset, seed, index):
    set_random_seed(seed)
    return dataset[index]


@pytest.mark.parametrize('off', [{}, {'realworld_degradation': None}, {'realworld_degradation': False}])
def test_bicubic_samples_are_unchanged_and_realworld_keeps_gt_and_ref(demo_root, off):
    datasets = [cufed_dataset(demo_root, **off), cufed_dataset(demo_root, realworld_degradation={})]
    pair_datasets = [homography_dataset(demo_root, **off), homography_dataset(demo_root, realworld_degradation={})]
    for seed, index in ((0, 0), (1, 5), (2, 9)):
        bicubic, realworld = (sample_at(dataset, seed, index) for dataset in datasets)
        assert set(bicubic) == BICUBIC_KEYS
        lq, lq_up = make_lr_pair(to_uint8(bicubic['gt']), 4)  # PIL bicubic of the augmented GT, as always
        assert np.array_equal(to_uint8(bicubic['lq']), lq) and np.array_equal(to_uint8(bicubic['lq_up']), lq_up)
        assert set(realworld) == BICUBIC_KEYS - {'lq', 'lq_up'} | set(KERNEL_BATCH_KEYS)
        for key in ('gt', 'ref'):  # bit for bit: the kernels are drawn after every other random choice
            assert torch.equal(realworld[key], bicubic[key])
        assert realworld['kernel1'].shape == (21, 21) and realworld['sinc_kernel'].shape == (21, 21)

        pair, degraded_pair = (sample_at(dataset, seed, index) for dataset in pair_datasets)
        assert set(pair) == {'img1', 'img1_lr_up', 'img2', 'gt_map', 'img1_path'}
        assert np.array_equal(to_uint8(pair['img1_lr_up']), make_lr_pair(to_uint8(pair['img1']), 4)[1])
        assert set(degraded_pair) == set(pair) - {'img1_lr_up'} | set(KERNEL_BATCH_KEYS)
        for key in ('img1', 'img2', 'gt_map'):
            assert torch.equal(degraded_pair[key], pair[key])


def frfsr_model(demo_root, block):
    opt = tiny_train_options(str(demo_root), total_iter=10)
    opt['datasets']['train'].update(gt_size=CROP)
    if block is not None:
        opt['datasets']['train']['realworld_degradation'] = block
    return build_model(dict(opt, is_train=True, dist=False, rank=0, world_size=1))


def test_frfsr_model_degrades_training_batches_on_the_device(demo_root):
    model = frfsr_model(demo_root, {})
    batch = collated(cufed_dataset(demo_root, realworld_degradation={}), 0)
    before = {key: batch[key].clone() for key in ('gt', 'ref', 'kernel1')}
    set_random_seed(7)
    model.feed_data(batch)
    assert model.lq.shape == (2, 3, CROP // 4, CROP // 4) and is_8bit(model.lq)
    assert torch.equal(model.lq_up, upsample_like_pil(model.lq, 4))  # the encoder sees LR-up of the degraded LR
    assert torch.equal(model.gt, before['gt']) and torch.equal(model.ref, before['ref'])  # clean GT and reference
    assert all(torch.equal(batch[key], value) for key, value in before.items())
    lq = model.lq
    set_random_seed(7)
    model.feed_data(batch)
    assert torch.equal(model.lq, lq)
    model.optimize_parameters(1)
    assert np.isfinite(model.log_dict['l_pix'])

    for clean in (collated(cufed_dataset(demo_root), 0),
                  default_collate([RefSRTestDataset({
                      'dataroot_gt': str(demo_root / 'test'),
                      'scale': 4
                  })[0]])):
        model.feed_data(clean)  # bicubic training batch and validation batch: passed through as they are
        assert torch.equal(model.lq, clean['lq']) and torch.equal(model.lq_up, clean['lq_up'])

    with pytest.raises(OptionError, match='no training dataset sets realworld_degradation'):
        frfsr_model(demo_root, None).feed_data(batch)


def test_student_distils_from_lr_up_of_the_degraded_image(demo_root, tmp_path):
    teacher_path = str(tmp_path / 'teacher.pth')
    torch.save({'params': FRFSRContrastiveEncoder(pretrained=False).state_dict()}, teacher_path)
    opt = encoder_options('tiny_student', str(demo_root), CROP, 2, teacher_weights=teacher_path)
    opt['datasets']['train']['realworld_degradation'] = {}
    model = build_model(dict(opt, is_train=True, dist=False, rank=0, world_size=1))
    batch = collated(ContrastiveHomographyDataset(dict(opt['datasets']['train'], phase='train', scale=4)), 0)
    model.feed_data(batch)
    assert torch.equal(model.img1, batch['img1']) and torch.equal(model.img2, batch['img2'])
    assert model.img1_lr_up.shape == batch['img1'].shape and is_8bit(model.img1_lr_up)
    bicubic_lr_up = make_lr_pair(to_uint8(batch['img1'][0]), 4)[1]
    assert np.abs(to_uint8(model.img1_lr_up[0]).astype(int) - bicubic_lr_up).mean() > 2
    model.optimize_parameters(1)
    assert np.isfinite(model.log_dict['l_triplet']) and np.isfinite(model.log_dict['l_distill'])


# ---------------------------------------------------------------------------------------- the fixed degraded test set


@pytest.mark.integration
def test_tool_writes_the_set_once_with_a_seed_per_image_name(demo_root, tmp_path, capsys):
    tool, src, first = load_tool(), demo_root / 'test', demo_root / 'test_realworld'
    names = sorted(p.name for p in src.iterdir())
    assert sorted(p.name for p in first.iterdir()) == sorted(names + ['degradation.yml', 'lq'])
    assert all((first / name).read_bytes() == (src / name).read_bytes() for name in names)
    for name in ('000_0.png', '001_0.png'):
        lr, gt = read_image_rgb(str(first / 'lq' / name)), mod_crop(read_image_rgb(str(src / name)), 4)
        assert lr.shape == (gt.shape[0] // 4, gt.shape[1] // 4, 3)
        assert np.abs(lr.astype(int) - make_lr_pair(gt, 4)[0]).mean() > 2  # not the bicubic LR
    record = yaml.safe_load((first / 'degradation.yml').read_text())
    assert record['seed'] == 0 and record['realworld_degradation']['jpeg_range'] == [30, 95]

    single = tmp_path / 'single'  # one image alone gets the same LR: its seed comes from its name
    single.mkdir()
    for name in names[:6]:
        (single / name).write_bytes((src / name).read_bytes())
    opt_path = osp.join(ROOT, 'options', 'frfsr_stage1_realworld.yml')  # the same values as the defaults
    assert tool.main(['--src', str(single), '--dst', str(tmp_path / 'again'), '--opt', opt_path]) == 0
    assert (tmp_path / 'again' / 'lq' / '000_0.png').read_bytes() == (first / 'lq' / '000_0.png').read_bytes()
    assert tool.main(['--src', str(single), '--dst', str(tmp_path / 'seed1'), '--seed', '1']) == 0
    assert (tmp_path / 'seed1' / 'lq' / '000_0.png').read_bytes() != (first / 'lq' / '000_0.png').read_bytes()
    capsys.readouterr()

    assert tool.main(['--src', str(single), '--dst', str(tmp_path / 'again')]) == 1
    assert "again/lq' already exists; the set is written once" in capsys.readouterr().err
    bicubic_yaml = osp.join(ROOT, 'options', 'frfsr_stage1.yml')
    assert tool.main(['--src', str(single), '--dst', str(tmp_path / 'none'), '--opt', bicubic_yaml]) == 1
    assert "no training dataset sets 'realworld_degradation'" in capsys.readouterr().err


def test_test_dataset_reads_the_given_lr_and_pads_it(demo_root, tmp_path):
    degraded = demo_root / 'test_realworld'
    base = {'dataroot_gt': str(degraded), 'scale': 4}
    padded = 0
    for ref_level in (1, 'lr'):
        clean = RefSRTestDataset(dict(base, ref_level=ref_level))
        given = RefSRTestDataset(dict(base, ref_level=ref_level, dataroot_lq=str(degraded / 'lq')))
        for index in range(len(given)):
            sample, bicubic = given[index], clean[index]
            lr = read_image_rgb(str(degraded / 'lq' / f'{index:03d}_0.png'))
            canvas_h, canvas_w = sample['lq_up'].shape[1:]
            canvas = pad_to(lr, canvas_h // 4, canvas_w // 4)  # the LR file, zeros beyond it
            padded += canvas.shape != lr.shape
            assert sample['lq'].shape == bicubic['lq'].shape and np.array_equal(to_uint8(sample['lq']), canvas)
            assert np.array_equal(to_uint8(sample['lq_up']), pil_bicubic_resize(canvas, (canvas_h, canvas_w)))
            assert torch.equal(sample['gt'], bicubic['gt'])
            assert torch.equal(sample['ref'], sample['lq_up'] if ref_level == 'lr' else bicubic['ref'])
    assert padded  # the demo references are larger than their GT, so the LR canvas is padded

    wrong = tmp_path / 'wrong_lq'
    wrong.mkdir()
    for name in ('000_0.png', '001_0.png'):
        Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(wrong / name)
    with pytest.raises(InputSizeError, match=r"LR image '.*000_0.png' is 10x10, expected 24x32 \(the mod-cropped GT"):
        RefSRTestDataset(dict(base, dataroot_lq=str(wrong)))[0]
    (wrong / '001_0.png').unlink()
    with pytest.raises(MissingFileError, match=r"test pair 1: image file '.*wrong_lq/001_0.png' does not exist"):
        RefSRTestDataset(dict(base, dataroot_lq=str(wrong)))
    with pytest.raises(MissingFileError, match="option 'dataroot_lq': folder"):
        RefSRTestDataset(dict(base, dataroot_lq=str(tmp_path / 'nowhere')))


# ------------------------------------------------------------------------- the shipped YAMLs through `basicsr train`


def basicsr(args, cwd):
    return subprocess.run(
        [sys.executable, '-m', 'frfsr_plugin.cli.basicsr_cli'] + args,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600)


def on_demo_data(opt, root, total_iter):
    """A shipped full-size YAML on the demo photos: CPU, tiny networks, a few iterations; its degradation block and
    everything else that does not depend on the data or the network size stay as shipped."""
    opt = copy.deepcopy(opt)
    nets = tiny_networks()
    opt.update({key: nets[key] for key in ('network_extractor', 'network_map', 'network_sife')}, num_gpu=0)
    datasets = opt['datasets']
    if 'train' in datasets:
        datasets['train'].update(
            dataroot_gt=str(root / 'train' / 'input'),
            dataroot_ref=str(root / 'train' / 'ref'),
            gt_size=CROP,
            num_worker_per_gpu=0,
            batch_size_per_gpu=2)
        opt['train'].update(total_iter=total_iter)
        opt['val']['val_freq'] = 1000  # validation after the last iteration only
        opt['logger'].update(print_freq=1, save_checkpoint_freq=2, use_tb_logger=False)
    for dataset in datasets.values():
        if dataset['type'] == 'RefSRTestDataset':
            dataset.update(dataroot_gt=str(root / 'test_realworld'), dataroot_lq=str(root / 'test_realworld' / 'lq'))
    return opt


@pytest.fixture(scope='module')
def realworld_runs(demo_root):
    """Stage 1 (2 iterations, then resumed to 4), stage 2 (2 iterations) and stage-1 test, from the shipped YAMLs."""
    stage1 = on_demo_data(read_yaml('frfsr_stage1_realworld.yml'), demo_root, 2)
    stage1['network_g'] = tiny_networks()['network_g']
    stage1_path = write_yaml(demo_root / 'stage1.yml', stage1)
    first = basicsr(['train', '-opt', stage1_path], demo_root)
    resumed = basicsr(['train', '-opt', stage1_path, '--auto_resume', '--force_yml', 'train:total_iter=4'], demo_root)
    weights = str(demo_root / 'experiments' / stage1['name'] / 'models' / 'net_g_4.pth')

    stage2 = on_demo_data(read_yaml('frfsr_stage2_realworld.yml'), demo_root, 2)
    net1 = tiny_networks()['network_g']
    stage2.update(network_stage1=net1, network_g=dict(net1, type='FRFSRStage2Net', reuse_channels=net1['num_feat']))
    stage2['network_d']['num_feat'] = 8
    stage2['path'].update(pretrain_network_stage1=weights, pretrain_network_g=weights)
    stage2['train']['perceptual_opt']['pretrained'] = False
    second = basicsr(['train', '-opt', write_yaml(demo_root / 'stage2.yml', stage2)], demo_root)

    test = on_demo_data(read_yaml('test_frfsr_cufed5_realworld.yml'), demo_root, None)
    test['network_g'] = net1
    test['path']['pretrain_network_g'] = weights
    tested = basicsr(['test', '-opt', write_yaml(demo_root / 'test.yml', test)], demo_root)
    return demo_root, (stage1, first, resumed), (stage2, second), (test, tested)


def train_log(root, opt, which=-1):
    return open(sorted(glob.glob(str(root / 'experiments' / opt['name'] / f"train_{opt['name']}_*.log")))[which]).read()


@pytest.mark.integration
def test_stage1_realworld_yaml_trains_on_demo_data_and_resumes(realworld_runs):
    root, (opt, first, resumed), _, _ = realworld_runs
    for result in (first, resumed):
        assert result.returncode == 0, result.stderr[-3000:]
    log = train_log(root, opt)
    assert 'Resuming training from epoch' in log and 'iter: 2.' in log and 'l_pix: ' in log
    assert 'Validation CUFED5_realworld' in log and '# psnr: ' in log
    assert {'net_g_2.pth', 'net_g_4.pth'
            } <= {osp.basename(p)
                  for p in glob.glob(str(root / 'experiments' / opt['name'] / 'models' / '*'))}


@pytest.mark.integration
def test_stage2_realworld_yaml_trains_on_demo_data(realworld_runs):
    root, _, (opt, result), _ = realworld_runs
    assert result.returncode == 0, result.stderr[-3000:]
    log = train_log(root, opt)
    assert all(key in log for key in ('l_g_pix', 'l_g_percep', 'l_g_gan', 'l_d_gp', 'Validation CUFED5_realworld'))


@pytest.mark.integration
def test_realworld_test_yaml_reads_the_degraded_copy(realworld_runs):
    root, _, _, (opt, result) = realworld_runs
    assert result.returncode == 0, result.stderr[-3000:]
    log = open(glob.glob(str(root / 'results' / opt['name'] / 'test_*.log'))[0]).read()
    assert 'Testing CUFED5_realworld' in log and '# psnr: ' in log
    images = root / 'results' / opt['name'] / 'visualization' / 'CUFED5_realworld'
    assert sorted(p.name for p in images.iterdir()) == [f"{group}_0_{opt['name']}.png" for group in ('000', '001')]


@pytest.mark.integration
def test_a_misspelt_degradation_key_stops_basicsr_train_in_one_line(demo_root):
    opt = on_demo_data(read_yaml('frfsr_stage1_realworld.yml'), demo_root, 1)
    opt.update(name='misspelt', network_g=tiny_networks()['network_g'])
    opt['datasets']['train']['realworld_degradation']['jpeg_rnage'] = [30, 95]
    result = basicsr(['train', '-opt', write_yaml(demo_root / 'misspelt.yml', opt)], demo_root)
    assert result.returncode == 1 and 'Traceback' not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == ("basicsr train: error: unknown option "
                                                      "'realworld_degradation.jpeg_rnage'; did you mean 'jpeg_range'?")


@pytest.mark.integration
def test_comparison_figure_tool_writes_labelled_panels(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(osp.join(ROOT, 'tools'))  # as when run as a script: it imports its sibling tool
    tool = load_tool('realworld_comparison')
    output = tmp_path / 'comparison.png'
    assert tool.main(['--output', str(output), '--seeds', '0']) == 0
    figure = read_image_rgb(str(output))
    # 2 crops x (bicubic, seed 0), each LR panel x4 under its label, panels and rows GAP apart
    assert figure.shape == (2 * (LABEL_HEIGHT + 160) + GAP, 2 * 224 + GAP, 3)
    panels = (slice(LABEL_HEIGHT, LABEL_HEIGHT + 160), slice(0,
                                                             224)), (slice(LABEL_HEIGHT,
                                                                           LABEL_HEIGHT + 160), slice(224 + GAP, None))
    bicubic, realworld = (figure[rows, columns].astype(int) for rows, columns in panels)
    assert np.abs(bicubic - realworld).mean() > 2 and (figure[:LABEL_HEIGHT] < 128).any()  # different LR, labels
    assert (bicubic[::4, ::4] == bicubic[3::4, 3::4]).all()  # LR pixels shown as 4x4 blocks
