"""Tests of the FRFSR datasets and their image helpers, on tiny fixtures cut from scikit-image's bundled photos."""
import os
import random
from os import path as osp

import cv2
import numpy as np
import pytest
import torch
from basicsr.data import build_dataset
from PIL import Image
from skimage import data as skimage_data

from frfsr_plugin.data.cufed_dataset import RefCUFEDDataset
from frfsr_plugin.data.refsr_test_dataset import RefSRTestDataset
from frfsr_plugin.data.transforms import (dihedral_augment, make_lr_pair, mod_crop, pad_to, pil_bicubic_resize,
                                          read_image_rgb, shuffle_patches)
from frfsr_plugin.utils.errors import OptionError

SAMPLE_KEYS = {'gt', 'lq', 'lq_up', 'ref', 'lq_path', 'gt_path', 'ref_path'}


def photo(name, top=0, left=0, height=None, width=None):
    """Crop of a scikit-image photo as RGB uint8 (height, width, 3)."""
    img = getattr(skimage_data, name)()[..., :3]
    height, width = height or img.shape[0], width or img.shape[1]
    return np.ascontiguousarray(img[top:top + height, left:left + width])


def write_rgb(path, img):
    os.makedirs(osp.dirname(path), exist_ok=True)
    assert cv2.imwrite(path, cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return path


def to_uint8(tensor):
    """(3, H, W) float tensor in [0, 1] -> (H, W, 3) uint8 array."""
    return np.round(tensor.permute(1, 2, 0).numpy() * 255).astype(np.uint8)


def pil_bicubic(img, height, width):
    return np.asarray(Image.fromarray(img).resize((width, height), Image.BICUBIC))


def tiles_of(img, grid):
    """The grid x grid tiles of an (H, W, C) image as a sorted list of bytes (a multiset)."""
    tile_h, tile_w = img.shape[0] // grid, img.shape[1] // grid
    return sorted(img[i * tile_h:(i + 1) * tile_h, j * tile_w:(j + 1) * tile_w].tobytes() for i in range(grid)
                  for j in range(grid))


def dihedral_variants(img):
    variants = []
    for base in (img, img.transpose(1, 0, 2)):
        variants += [base, base[:, ::-1], base[::-1], base[::-1, ::-1]]
    return variants


def check_sample(sample, gt_hw, lr_hw):
    """Keys, dtypes, value range and shapes of a sample; ``lq_up`` and ``ref`` have the padded HR size 4 * lr_hw."""
    assert set(sample) == SAMPLE_KEYS
    assert sample['gt'].shape == (3, *gt_hw)
    assert sample['lq'].shape == (3, *lr_hw)
    hr_hw = (4 * lr_hw[0], 4 * lr_hw[1])
    assert sample['lq_up'].shape == sample['ref'].shape == (3, *hr_hw)
    for key in ('gt', 'lq', 'lq_up', 'ref'):
        assert sample[key].dtype == torch.float32
        assert 0 <= sample[key].min() and sample[key].max() <= 1
    assert sample['lq_path'] == sample['gt_path'] and isinstance(sample['ref_path'], str)


def seed_all(seed):
    np.random.seed(seed)
    random.seed(seed)


# ---------------------------------------------------------------------------------------------------------- fixtures
@pytest.fixture
def cufed_root(tmp_path):
    """CUFED-like train set: 160 x 160 inputs with references of other sizes."""
    root = tmp_path / 'CUFED'
    crops = {'a.png': ('astronaut', 30, 150), 'b.png': ('chelsea', 60, 200), 'c.png': ('coffee', 100, 300)}
    ref_sizes = {'a.png': (200, 180), 'b.png': (150, 170), 'c.png': (120, 130)}
    for name, (photo_name, top, left) in crops.items():
        write_rgb(str(root / 'input' / name), photo(photo_name, top, left, 160, 160))
        write_rgb(str(root / 'ref' / name), photo(photo_name, top + 10, left + 5, *ref_sizes[name]))
    return root


def train_opt(root, **kwargs):
    opt = dict(
        name='CUFED',
        type='RefCUFEDDataset',
        phase='train',
        scale=4,
        dataroot_gt=str(root / 'input'),
        dataroot_ref=str(root / 'ref'))
    opt.update(kwargs)
    return opt


NO_AUG = dict(use_flip=False, use_rot=False, ref_shuffle_prob=0)


@pytest.fixture
def same_ref_root(tmp_path):
    """Train set whose reference is the input itself (160 x 160), so joint augmentation keeps ref == gt."""
    img = photo('rocket', 150, 250, 160, 160)
    write_rgb(str(tmp_path / 'same' / 'input' / 'r.png'), img)
    write_rgb(str(tmp_path / 'same' / 'ref' / 'r.png'), img)
    return tmp_path / 'same', img


@pytest.fixture
def cufed5_root(tmp_path):
    """CUFED5-like folder: group 000 has a 99 x 130 GT and refs of other sizes, group 001 same-size refs."""
    root = tmp_path / 'CUFED5'
    write_rgb(str(root / '000_0.png'), photo('chelsea', 20, 100, 99, 130))
    write_rgb(str(root / '000_1.png'), photo('chelsea', 30, 110, 110, 90))
    write_rgb(str(root / '000_2.png'), photo('chelsea', 0, 0, 64, 160))
    write_rgb(str(root / '001_0.png'), photo('coffee', 50, 50, 96, 128))
    write_rgb(str(root / '001_1.png'), photo('coffee', 60, 70, 96, 128))
    write_rgb(str(root / '001_2.png'), photo('coffee', 0, 0, 96, 128))
    write_rgb(str(root / 'zzz_1.png'), photo('coffee', 0, 0, 32, 32))  # no _0 file: not a group
    return root


def val_opt(root, **kwargs):
    opt = dict(name='CUFED5', type='RefSRTestDataset', phase='val', scale=4, dataroot_gt=str(root))
    opt.update(kwargs)
    return opt


# ------------------------------------------------------------------------------------------------------- transforms
def test_read_image_rgb_converts_to_rgb_uint8(tmp_path):
    rgb = photo('astronaut', 0, 0, 20, 30)
    gray = rgb[..., 1]
    cv2.imwrite(str(tmp_path / 'gray.png'), gray)
    cv2.imwrite(str(tmp_path / 'rgba.png'), np.dstack([rgb[..., ::-1], np.full(gray.shape, 7, np.uint8)]))
    rgb16 = np.minimum(rgb.astype(np.uint32) * 257 + np.array([0, 128, 129]), 65535).astype(np.uint16)
    cv2.imwrite(str(tmp_path / 'rgb16.png'), np.ascontiguousarray(rgb16[..., ::-1]))
    cv2.imwrite(str(tmp_path / 'gray16.png'), gray.astype(np.uint16) * 257)

    for name, expected in [('gray', np.repeat(gray[..., None], 3, axis=2)), ('rgba', rgb),
                           ('rgb16', np.round(rgb16 / 257).astype(np.uint8)),
                           ('gray16', np.repeat(gray[..., None], 3, axis=2))]:
        img = read_image_rgb(str(tmp_path / f'{name}.png'))
        assert img.dtype == np.uint8 and img.shape == (20, 30, 3), name
        np.testing.assert_array_equal(img, expected, err_msg=name)
    # 16-bit values v map to round(v / 257): 257 * 10 + 128 -> 10, 257 * 10 + 129 -> 11.
    cv2.imwrite(str(tmp_path / 'round16.png'), np.array([[2698, 2699]], np.uint16))
    np.testing.assert_array_equal(read_image_rgb(str(tmp_path / 'round16.png')), [[[10] * 3, [11] * 3]])


def test_read_image_rgb_errors(tmp_path):
    missing = str(tmp_path / 'missing.png')
    with pytest.raises(FileNotFoundError, match='missing.png'):
        read_image_rgb(missing)
    corrupt = tmp_path / 'corrupt.png'
    corrupt.write_bytes(b'not a png at all')
    with pytest.raises(ValueError, match='corrupt.png'):
        read_image_rgb(str(corrupt))


def test_resize_pad_crop_and_lr_pair():
    img = photo('coffee', 0, 0, 43, 58)
    np.testing.assert_array_equal(pil_bicubic_resize(img, (20, 30)), pil_bicubic(img, 20, 30))
    assert pil_bicubic_resize(img, (20, 30)).dtype == np.uint8

    cropped = mod_crop(img, 4)
    assert cropped.shape == (40, 56, 3)
    np.testing.assert_array_equal(cropped, img[:40, :56])

    padded = pad_to(cropped, 44, 60)
    assert padded.shape == (44, 60, 3)
    np.testing.assert_array_equal(padded[:40, :56], cropped)
    assert not padded[40:].any() and not padded[:, 56:].any()
    with pytest.raises(ValueError):
        pad_to(cropped, 39, 60)

    lq, lq_up = make_lr_pair(cropped, 4)
    np.testing.assert_array_equal(lq, pil_bicubic(cropped, 10, 14))
    np.testing.assert_array_equal(lq_up, pil_bicubic(lq, 40, 56))
    with pytest.raises(ValueError, match='multiple'):
        make_lr_pair(img, 4)


def test_shuffle_patches_is_a_tile_permutation():
    img = np.random.default_rng(0).integers(1, 256, size=(53, 47, 3), dtype=np.uint8)
    out = shuffle_patches(img, 5, np.random.default_rng(1))
    assert out.shape == img.shape and out.dtype == img.dtype and out is not img
    assert not out[50:].any() and not out[:, 45:].any()  # remainder rows / columns zeroed
    assert tiles_of(out, 5) == tiles_of(img, 5)
    assert not np.array_equal(out[:50, :45], img[:50, :45])
    np.testing.assert_array_equal(shuffle_patches(img, 5, np.random.default_rng(1)), out)
    assert not np.array_equal(shuffle_patches(img, 5, np.random.default_rng(2)), out)

    np.random.seed(3)  # the numpy.random module works as the rng too
    global_out = shuffle_patches(img, 5, np.random)
    np.random.seed(3)
    np.testing.assert_array_equal(shuffle_patches(img, 5, np.random), global_out)
    with pytest.raises(ValueError):
        shuffle_patches(img[:4], 5, np.random)


def test_dihedral_augment_is_joint():
    a = np.arange(2 * 3 * 1).reshape(2, 3, 1)
    b = a + 100
    out_a, out_b = dihedral_augment([a, b], hflip=True, vflip=True, transpose=True)
    np.testing.assert_array_equal(out_a, a[::-1, ::-1].transpose(1, 0, 2))
    np.testing.assert_array_equal(out_b, out_a + 100)
    assert out_a.flags.c_contiguous
    np.testing.assert_array_equal(dihedral_augment([a], False, False, False)[0], a)


# ------------------------------------------------------------------------------------------------------ train set
@pytest.mark.parametrize('gt_size', [160, 96])
def test_train_sample_shapes(cufed_root, gt_size):
    dataset = RefCUFEDDataset(train_opt(cufed_root, gt_size=gt_size))
    assert len(dataset) == 3
    seed_all(0)
    for index in range(len(dataset)):
        sample = dataset[index]
        check_sample(sample, (gt_size, gt_size), (gt_size // 4, gt_size // 4))
    assert sample['gt_path'] == str(cufed_root / 'input' / 'c.png')
    assert sample['ref_path'] == str(cufed_root / 'ref' / 'c.png')


def test_train_unaugmented_sample_is_pil_bicubic(cufed_root):
    sample = RefCUFEDDataset(train_opt(cufed_root, **NO_AUG))[0]
    hr = read_image_rgb(str(cufed_root / 'input' / 'a.png'))
    np.testing.assert_array_equal(to_uint8(sample['gt']), hr)
    lq = pil_bicubic(hr, 40, 40)
    np.testing.assert_array_equal(to_uint8(sample['lq']), lq)
    np.testing.assert_array_equal(to_uint8(sample['lq_up']), pil_bicubic(lq, 160, 160))
    ref = read_image_rgb(str(cufed_root / 'ref' / 'a.png'))
    np.testing.assert_array_equal(to_uint8(sample['ref']), pil_bicubic(ref, 160, 160))


def test_train_random_crop_and_zero_padding(tmp_path):
    write_rgb(str(tmp_path / 'input' / 'x.png'), photo('astronaut', 0, 0, 120, 200))
    write_rgb(str(tmp_path / 'ref' / 'x.png'), photo('astronaut', 0, 0, 100, 100))
    seed_all(0)
    gt = to_uint8(RefCUFEDDataset(train_opt(tmp_path, **NO_AUG))[0]['gt'])
    assert gt.shape == (160, 160, 3)
    assert not gt[120:].any() and gt[:120].any()  # padded rows at the bottom
    # The 160 columns are a window of the 200 input columns.
    windows = [left for left in range(41) if np.array_equal(gt[:120], photo('astronaut', 0, left, 120, 160))]
    assert len(windows) == 1


def test_train_joint_augmentation(same_ref_root):
    root, img = same_ref_root
    dataset = RefCUFEDDataset(train_opt(root, ref_shuffle_prob=0))
    seen = set()
    for seed in range(12):
        seed_all(seed)
        sample = dataset[0]
        gt = to_uint8(sample['gt'])
        np.testing.assert_array_equal(to_uint8(sample['ref']), gt)
        matches = [k for k, variant in enumerate(dihedral_variants(img)) if np.array_equal(gt, variant)]
        assert matches
        seen.add(matches[0])
        np.testing.assert_array_equal(to_uint8(sample['lq']), pil_bicubic(gt, 40, 40))
    assert len(seen) > 2  # flips / transpose really happen


def test_train_ref_shuffle(same_ref_root):
    root, img = same_ref_root
    sample = RefCUFEDDataset(train_opt(root, use_flip=False, use_rot=False, ref_shuffle_prob=1))[0]
    ref = to_uint8(sample['ref'])
    assert tiles_of(ref, 5) == tiles_of(img, 5) and not np.array_equal(ref, img)
    np.testing.assert_array_equal(to_uint8(sample['gt']), img)


def test_train_reproducible_under_seed(cufed_root):
    dataset = RefCUFEDDataset(train_opt(cufed_root, gt_size=96, use_color_jitter=True))

    def draw(seed):
        seed_all(seed)
        return [dataset[index] for index in range(len(dataset))]

    first, again, other = draw(0), draw(0), draw(1)
    for a, b in zip(first, again):
        assert all(torch.equal(a[key], b[key]) for key in ('gt', 'lq', 'lq_up', 'ref'))
    assert any(not torch.equal(a[key], b[key]) for a, b in zip(first, other) for key in ('gt', 'ref'))


def test_train_color_jitter_changes_only_ref(same_ref_root):
    root, img = same_ref_root
    seed_all(0)
    sample = RefCUFEDDataset(train_opt(root, use_color_jitter=True, **NO_AUG))[0]
    np.testing.assert_array_equal(to_uint8(sample['gt']), img)
    assert not np.array_equal(to_uint8(sample['ref']), img)


def test_train_build_and_collate(cufed_root):
    dataset = build_dataset(train_opt(cufed_root, gt_size=96))
    assert isinstance(dataset, RefCUFEDDataset)
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=2)))
    assert batch['gt'].shape == (2, 3, 96, 96) and batch['lq'].shape == (2, 3, 24, 24)
    assert len(batch['lq_path']) == 2


def test_train_errors(cufed_root, tmp_path):
    with pytest.raises(FileNotFoundError, match='nowhere'):
        RefCUFEDDataset(train_opt(cufed_root, dataroot_gt=str(tmp_path / 'nowhere')))
    os.remove(cufed_root / 'ref' / 'b.png')
    with pytest.raises(FileNotFoundError, match=r"b\.png"):
        RefCUFEDDataset(train_opt(cufed_root))
    (tmp_path / 'empty').mkdir()
    with pytest.raises(ValueError, match='no images'):
        RefCUFEDDataset(train_opt(cufed_root, dataroot_gt=str(tmp_path / 'empty')))
    opt = train_opt(cufed_root)
    del opt['dataroot_gt']
    with pytest.raises(KeyError, match='dataroot_gt'):
        RefCUFEDDataset(opt)
    with pytest.raises(ValueError, match='scale'):
        RefCUFEDDataset(train_opt(cufed_root, scale=2))
    with pytest.raises(ValueError, match='gt_size'):
        RefCUFEDDataset(train_opt(cufed_root, gt_size=150))


# ------------------------------------------------------------------------------------------------------- test set
def test_cufed5_padding_of_mismatched_ref(cufed5_root):
    dataset = RefSRTestDataset(val_opt(cufed5_root))
    assert len(dataset) == 2  # zzz has no _0 file
    sample = dataset[0]
    # GT 99 x 130 -> 96 x 128, ref 110 x 90 -> 108 x 88, padded to 108 x 128.
    check_sample(sample, (96, 128), (27, 32))
    assert sample['gt_path'] == str(cufed5_root / '000_0.png')
    assert sample['ref_path'] == str(cufed5_root / '000_1.png')

    gt = read_image_rgb(str(cufed5_root / '000_0.png'))[:96, :128]
    np.testing.assert_array_equal(to_uint8(sample['gt']), gt)
    padded_gt = np.zeros((108, 128, 3), np.uint8)
    padded_gt[:96] = gt
    lq = pil_bicubic(padded_gt, 27, 32)
    np.testing.assert_array_equal(to_uint8(sample['lq']), lq)
    np.testing.assert_array_equal(to_uint8(sample['lq_up']), pil_bicubic(lq, 108, 128))
    ref = to_uint8(sample['ref'])
    np.testing.assert_array_equal(ref[:, :88], read_image_rgb(str(cufed5_root / '000_1.png'))[:108, :88])
    assert not ref[:, 88:].any()


def test_decoupled_canvas_pads_nothing(cufed5_root, tmp_path):
    """``ref_canvas: decoupled``: the LR of the mod-cropped GT itself (or the given one) and the mod-cropped Ref."""
    gt = read_image_rgb(str(cufed5_root / '000_0.png'))[:96, :128]
    lq = pil_bicubic(gt, 24, 32)
    sample = RefSRTestDataset(val_opt(cufed5_root, ref_canvas='decoupled'))[0]
    np.testing.assert_array_equal(to_uint8(sample['gt']), gt)
    np.testing.assert_array_equal(to_uint8(sample['lq']), lq)
    np.testing.assert_array_equal(to_uint8(sample['lq_up']), pil_bicubic(lq, 96, 128))
    np.testing.assert_array_equal(to_uint8(sample['ref']), read_image_rgb(str(cufed5_root / '000_1.png'))[:108, :88])
    given = np.ascontiguousarray(lq[::-1])  # a given LR file other than the bicubic one
    write_rgb(str(tmp_path / 'lq' / '000_0.png'), given)
    write_rgb(str(tmp_path / 'lq' / '001_0.png'), pil_bicubic(read_image_rgb(str(cufed5_root / '001_0.png')), 24, 32))
    sample = RefSRTestDataset(val_opt(cufed5_root, ref_canvas='decoupled', dataroot_lq=str(tmp_path / 'lq')))[0]
    np.testing.assert_array_equal(to_uint8(sample['lq']), given)
    np.testing.assert_array_equal(to_uint8(sample['lq_up']), pil_bicubic(given, 96, 128))
    assert sample['ref'].shape == (3, 108, 88)
    with pytest.raises(OptionError, match="option 'ref_canvas' must be one of .'padded', 'decoupled'., got 'tiles'"):
        RefSRTestDataset(val_opt(cufed5_root, ref_canvas='tiles'))


def test_cufed5_same_size_and_ref_level(cufed5_root):
    sample = RefSRTestDataset(val_opt(cufed5_root, ref_level=2))[1]
    check_sample(sample, (96, 128), (24, 32))
    assert sample['ref_path'] == str(cufed5_root / '001_2.png')
    np.testing.assert_array_equal(to_uint8(sample['ref']), read_image_rgb(sample['ref_path']))
    # Level 2 of group 000 is 64 x 160: padded to 96 x 160 (GT 96 x 128).
    check_sample(RefSRTestDataset(val_opt(cufed5_root, ref_level='2'))[0], (96, 128), (24, 40))


@pytest.mark.parametrize('mode', ['cufed5', 'pairs'])
def test_lr_reference_is_lq_up(cufed5_root, mode):
    pair_list = cufed5_root / 'pairs.txt'
    pair_list.write_text('000_0.png 000_1.png\n')
    sample = RefSRTestDataset(val_opt(cufed5_root, mode=mode, ref_level='lr', pair_list=str(pair_list)))[0]
    check_sample(sample, (96, 128), (24, 32))
    assert torch.equal(sample['ref'], sample['lq_up'])
    np.testing.assert_array_equal(to_uint8(sample['lq']), pil_bicubic(to_uint8(sample['gt']), 24, 32))
    assert sample['ref_path'] == sample['gt_path']


def test_pairs_mode(cufed5_root, tmp_path):
    refs = tmp_path / 'refs'
    write_rgb(str(refs / 'sub' / 'r.png'), photo('rocket', 0, 0, 100, 120))
    pair_list = tmp_path / 'pairs.txt'
    pair_list.write_text('# gt ref\n\n001_0.png   sub/r.png\n  000_0.png\tsub/r.png  \n')
    dataset = RefSRTestDataset(val_opt(cufed5_root, mode='pairs', pair_list=str(pair_list), dataroot_ref=str(refs)))
    assert len(dataset) == 2
    sample = dataset[0]
    assert sample['gt_path'] == str(cufed5_root / '001_0.png')
    assert sample['ref_path'] == str(refs / 'sub' / 'r.png')
    check_sample(sample, (96, 128), (25, 32))  # ref 100 x 120 pads the 96 x 128 GT to 100 x 128


def test_test_time_shuffle_is_reproducible(cufed5_root):
    opt = val_opt(cufed5_root, ref_shuffle_grid=4, ref_shuffle_seed=3)
    np.random.seed(0)
    first = RefSRTestDataset(opt)[1]['ref']
    np.random.seed(1)  # global RNG state must not matter
    second = RefSRTestDataset(opt)[1]['ref']
    assert torch.equal(first, second)
    plain = RefSRTestDataset(val_opt(cufed5_root))[1]['ref']
    assert not torch.equal(first, plain)
    assert tiles_of(to_uint8(first), 4) == tiles_of(to_uint8(plain), 4)
    assert not torch.equal(RefSRTestDataset(dict(opt, ref_shuffle_seed=4))[1]['ref'], first)
    assert torch.equal(RefSRTestDataset(dict(opt, ref_shuffle_grid=0))[1]['ref'], plain)


def test_test_set_errors(cufed5_root, tmp_path):
    with pytest.raises(FileNotFoundError, match='nowhere'):
        RefSRTestDataset(val_opt(tmp_path / 'nowhere'))
    for level in (0, 6, 'foo', True, None):
        with pytest.raises(ValueError, match='ref_level'):
            RefSRTestDataset(val_opt(cufed5_root, ref_level=level))
    with pytest.raises(ValueError, match='ref_level'):
        RefSRTestDataset(val_opt(cufed5_root, mode='pairs', ref_level=1, pair_list='x'))
    with pytest.raises(FileNotFoundError, match=r'000_3\.png'):
        RefSRTestDataset(val_opt(cufed5_root, ref_level=3))
    with pytest.raises(ValueError, match='ref_shuffle_grid'):
        RefSRTestDataset(val_opt(cufed5_root, ref_shuffle_grid=3))
    with pytest.raises(ValueError, match='mode'):
        RefSRTestDataset(val_opt(cufed5_root, mode='cufed'))

    with pytest.raises(KeyError, match='pair_list'):
        RefSRTestDataset(val_opt(cufed5_root, mode='pairs'))
    with pytest.raises(FileNotFoundError, match='pair_list'):
        RefSRTestDataset(val_opt(cufed5_root, mode='pairs', pair_list=str(tmp_path / 'none.txt')))
    bad = tmp_path / 'bad.txt'
    bad.write_text('# header\n000_0.png 000_1.png\n001_0.png 001_1.png extra\n')
    with pytest.raises(ValueError, match=r'bad\.txt.*line 3'):
        RefSRTestDataset(val_opt(cufed5_root, mode='pairs', pair_list=str(bad)))
    bad.write_text('000_0.png missing.png\n')
    with pytest.raises(FileNotFoundError, match='missing.png'):
        RefSRTestDataset(val_opt(cufed5_root, mode='pairs', pair_list=str(bad)))
