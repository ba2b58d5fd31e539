"""The bad-input matrix: every row ends with one clear line naming the file or key and exit code 1, is converted
correctly (grayscale, RGBA, 16-bit), or, where the YAML allows it, is skipped in training with a logged warning.

Rows covered elsewhere: a missing YAML, plugin, data folder or pretrained-weights file and unknown types
(``test_launcher.py::test_user_errors_end_with_one_line_and_exit_code_1`` and ``test_unknown_type_in_yaml...``), and a
Ref over the memory budget (``test_tiling.py``).
"""
import glob
import shutil
import subprocess
import sys
from os import path as osp

import cv2
import numpy as np
import pytest
import torch
from basicsr.archs import build_network
from helpers import tiny_networks, tiny_train_options, write_yaml
from skimage import data as skimage_data

from frfsr_plugin.cli import basicsr_cli, frfsr_cli
from frfsr_plugin.data.transforms import read_image_rgb

LR_SHAPE = (20, 24)  # h, w


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
    """An LR photo and a reference of other sizes."""
    root = tmp_path_factory.mktemp('bad_inputs')
    photo = skimage_data.chelsea()
    cv2.imwrite(str(root / 'lr.png'), cv2.cvtColor(cv2.resize(photo, LR_SHAPE[::-1]), cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(root / 'ref.png'), cv2.cvtColor(photo[:100, :120], cv2.COLOR_RGB2BGR))
    return root


@pytest.fixture
def infer(workdir, tiny_checkpoints, capsys):
    """``frfsr infer`` in process on the tiny stage-1 model and the inputs of ``workdir``, some replaced: a function
    of ``lr``, ``ref`` and ``weights`` that returns (exit code, stderr)."""

    def run(lr=None, ref=None, weights=None):
        code = frfsr_cli.main([
            'infer', '--opt', tiny_checkpoints['stage1_yml'], '--weights', weights or tiny_checkpoints['stage1'],
            '--lr', lr or str(workdir / 'lr.png'), '--ref', ref or str(workdir / 'ref.png'), '-o',
            str(workdir / 'out.png')
        ])
        return code, capsys.readouterr().err

    return run


def assert_one_line_error(code, stderr, *fragments):
    assert code == 1, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and 'Traceback' not in stderr, stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def corrupt(kind, source, folder):
    """A damaged copy of the PNG ``source``: ``truncated_png``, ``truncated_jpg``, ``garbage`` or ``text``."""
    img = cv2.imread(str(source))
    if kind == 'truncated_png':
        payload = cv2.imencode('.png', img)[1].tobytes()
        path, content = folder / 'truncated.png', payload[:len(payload) // 2]
    elif kind == 'truncated_jpg':
        payload = cv2.imencode('.jpg', img)[1].tobytes()
        path, content = folder / 'truncated.jpg', payload[:len(payload) // 2]
    elif kind == 'garbage':
        path, content = folder / 'garbage.png', np.random.default_rng(0).bytes(2000)
    else:
        path, content = folder / 'notes.png', b'these are my notes, not an image\n'
    path.write_bytes(content)
    return path


# ------------------------------------------------------------------------------------------ image files (infer)
@pytest.mark.parametrize('kind', ['truncated_png', 'truncated_jpg', 'garbage', 'text'])
@pytest.mark.parametrize('role', ['lr', 'ref'])
def test_damaged_image_files_are_named(workdir, kind, role, tmp_path, infer):
    damaged = corrupt(kind, workdir / f'{role}.png', tmp_path)
    code, stderr = infer(**{role: str(damaged)})
    assert_one_line_error(code, stderr, f"'{damaged}'", 'truncated' if 'truncated' in kind else 'could not decode')


def test_missing_image_file_is_named(workdir, infer):
    code, stderr = infer(ref=str(workdir / 'no_such_ref.png'))
    assert_one_line_error(code, stderr, f"image file '{workdir / 'no_such_ref.png'}' does not exist")


@pytest.mark.integration
@pytest.mark.parametrize('mode', ['gray', 'rgba', '16bit'])
def test_gray_rgba_and_16_bit_inputs_are_converted(workdir, mode, tmp_path, infer):
    rgb = cv2.cvtColor(cv2.imread(str(workdir / 'lr.png')), cv2.COLOR_BGR2RGB)
    bgr = rgb[..., ::-1]
    if mode == 'gray':
        stored, expected = bgr[..., 1], np.repeat(bgr[..., 1:2], 3, axis=2)
    elif mode == 'rgba':
        stored, expected = np.dstack([bgr, np.full(rgb.shape[:2], 128, np.uint8)]), rgb
    else:
        stored, expected = bgr.astype(np.uint16) * 257, rgb
    path = tmp_path / f'{mode}.png'
    cv2.imwrite(str(path), stored)
    np.testing.assert_array_equal(read_image_rgb(str(path)), expected)
    code, stderr = infer(lr=str(path))
    assert code == 0, stderr
    assert cv2.imread(str(workdir / 'out.png')).shape == (4 * LR_SHAPE[0], 4 * LR_SHAPE[1], 3)


def test_lr_below_the_minimum_size(workdir, tmp_path, infer):
    small = tmp_path / 'small.png'
    cv2.imwrite(str(small), cv2.imread(str(workdir / 'lr.png'))[:14])
    code, stderr = infer(lr=str(small))
    assert_one_line_error(code, stderr, 'the LR image is 24x14; FRFSR needs at least 15x15')


# ------------------------------------------------------------------------------------------ weights files
def test_weights_file_not_found(workdir, infer):
    code, stderr = infer(weights=str(workdir / 'nowhere.pth'))
    assert_one_line_error(code, stderr, f"'{workdir / 'nowhere.pth'}' not found")


def test_checkpoint_of_another_architecture_names_the_keys(workdir, infer):
    discriminator = workdir / 'net_d.pth'
    torch.save({'params': build_network({'type': 'FRFSRDiscriminator'}).state_dict()}, discriminator)
    code, stderr = infer(weights=str(discriminator))
    assert_one_line_error(code, stderr, f"FRFSRNet: weights from '{discriminator}' do not fit", 'missing keys (',
                          'conv_first.weight', 'unexpected keys (', 'features.')


def test_checkpoint_of_a_wider_network_names_the_shapes(workdir, infer):
    wider = dict(tiny_networks()['network_g'], num_feat=24)
    path = workdir / 'net_g_wider.pth'
    torch.save({'params': build_network(wider).state_dict()}, path)
    code, stderr = infer(weights=str(path))
    assert_one_line_error(code, stderr, 'shape mismatch (file vs network): conv_first.weight: (24, 3, 3, 3) vs '
                          '(16, 3, 3, 3)')


@pytest.mark.integration
def test_training_from_a_wrong_architecture_checkpoint_fails_before_training(workdir, demo_data):
    """`path.pretrain_network_g` of another arch: strict and non-strict loading both stop with the file named."""
    torch.save({'params': build_network({'type': 'FRFSRDiscriminator'}).state_dict()}, workdir / 'net_d_train.pth')
    for strict in (True, False):
        opt = tiny_train_options(demo_data, total_iter=2, name=f'wrong_arch_{strict}')
        opt['path'].update(pretrain_network_g=str(workdir / 'net_d_train.pth'), strict_load_g=strict)
        result = subprocess.run([
            sys.executable, '-m', 'frfsr_plugin.cli.basicsr_cli', 'train', '-opt',
            write_yaml(workdir / f'wrong_arch_{strict}.yml', opt)
        ],
                                cwd=workdir,
                                capture_output=True,
                                text=True,
                                timeout=300)
        assert result.returncode == 1 and 'Traceback' not in result.stderr, result.stderr[-2000:]
        message = result.stderr.strip().splitlines()[-1]
        assert f"'{workdir / 'net_d_train.pth'}'" in message
        assert ('missing keys' in message) if strict else ('no parameter name' in message)


# ------------------------------------------------------------------------------------------ YAML
@pytest.mark.parametrize('key', ['name', 'network_g', 'datasets.train', 'train.total_iter', 'logger.print_freq'])
def test_missing_required_option_is_named(workdir, capsys, key, demo_data):
    opt = tiny_train_options(demo_data, total_iter=2)
    *parents, leaf = key.split('.')
    section = opt
    for parent in parents:
        section = section[parent]
    del section[leaf]
    opt_path = write_yaml(workdir / 'missing_key.yml', opt)
    code = basicsr_cli.main(['train', '-opt', opt_path])
    assert_one_line_error(code, capsys.readouterr().err, f'option `{key}` is missing')


def test_force_yml_of_an_unknown_option_is_named(workdir, capsys, demo_data):
    opt_path = write_yaml(workdir / 'force.yml', tiny_train_options(demo_data, total_iter=2))
    code = basicsr_cli.main(['train', '-opt', opt_path, '--force_yml', 'train:totl_iter=3'])
    assert_one_line_error(code, capsys.readouterr().err, "option `train:totl_iter` does not exist")


# ------------------------------------------------------------------------------------------ training data
@pytest.mark.integration
@pytest.mark.parametrize('skip', [True, False])
def test_unreadable_training_images_are_skipped_or_named(workdir, skip, tmp_path, demo_data):
    """With `skip_unreadable: true` damaged training images are logged and replaced; without, the run stops."""
    data = tmp_path / 'train'
    shutil.copytree(osp.join(demo_data, 'train'), data)
    *victims, _ = sorted((data / 'input').iterdir())  # all but one input truncated
    for victim in victims:
        victim.write_bytes(victim.read_bytes()[:100])
    opt = tiny_train_options(demo_data, total_iter=2, name=f'skip_{skip}')
    opt['datasets']['train'].update(
        dataroot_gt=str(data / 'input'), dataroot_ref=str(data / 'ref'), skip_unreadable=skip, batch_size_per_gpu=1)
    opt.pop('val')
    result = subprocess.run(
        [sys.executable, '-m', 'frfsr_plugin.cli.basicsr_cli', 'train', '-opt',
         write_yaml(tmp_path / 'skip.yml', opt)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300)
    if skip:
        assert result.returncode == 0, result.stderr[-2000:]
        log = open(glob.glob(str(tmp_path / 'experiments' / f'skip_{skip}' / 'train_*.log'))[0]).read()
        assert any(f"skipped sample '{victim.name}': could not decode image file '{victim}'" in log
                   for victim in victims), log[-2000:]
    else:
        assert result.returncode == 1 and 'Traceback' not in result.stderr, result.stderr[-2000:]
        assert any(
            result.stderr.strip().splitlines()[-1] == (f"basicsr train: error: could not decode image file '{victim}' "
                                                       '(truncated, corrupt or not an image)') for victim in victims)
