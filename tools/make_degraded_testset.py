"""Write a fixed-seed real-world degraded copy of a CUFED5-layout test set, once, so that results compare across runs.

Usage: python tools/make_degraded_testset.py --src datasets/CUFED5 --dst datasets/CUFED5_realworld [--seed 0]
                                              [--opt options/frfsr_stage1_realworld.yml]

Copies every image of SRC (GTs ``XXX_0.png``, references ``XXX_1..5.png``) to DST and writes ``DST/lq/XXX_0.png``:
the GT, mod-cropped to a multiple of 4, degraded by Real-ESRGAN's second-order pipeline on the CPU with the options
of the training dataset's ``realworld_degradation`` block in ``--opt`` (default: Real-ESRGAN's x4 values, which the
``*_realworld.yml`` recipes use). Each image's random seed comes from ``--seed`` and its file name, so an image's LR
does not depend on the other images. ``DST/degradation.yml`` records the seed and the options. An existing
``DST/lq`` is never overwritten. ``RefSRTestDataset`` reads the set with ``dataroot_gt: DST`` and
``dataroot_lq: DST/lq`` (``options/test_frfsr_cufed5_realworld.yml``). Prints ``images: N`` at the end.
"""
import argparse
import os
import shutil
import sys
import zlib
from os import path as osp

import cv2
import numpy as np
import torch
import yaml

import frfsr_plugin  # noqa: F401  (torchvision alias for basicsr, then registration)
from frfsr_plugin.data.realworld_degradation import (BLOCK_KEY, KERNEL_BATCH_KEYS, check_degradable_size,
                                                     draw_degradation_kernels, parse_realworld_options,
                                                     resolved_settings, train_degradation_block)
from frfsr_plugin.data.transforms import SUPPORTED_SCALE, list_image_names, mod_crop, read_image_rgb
from frfsr_plugin.ops.realworld_degradation import RealWorldDegradation
from frfsr_plugin.utils.errors import MissingFileError, OptionError, UserInputError
from frfsr_plugin.utils.options import read_options

# isort: split
from basicsr.utils import set_random_seed

GT_SUFFIX = '_0.png'
LQ_FOLDER = 'lq'


def image_seed(seed, name):
    """The random seed of one image: from the set's seed and the image's file name (not its position)."""
    return int(np.random.SeedSequence([seed, zlib.crc32(name.encode())]).generate_state(1)[0])


def degrade_image(hr, degradation, seed, what):
    """One HR image degraded by the pipeline, with Python's, numpy's and torch's generators seeded by ``seed``.

    Args:
        hr (ndarray): (H, W, 3) uint8 RGB image, H and W multiples of 4.
        degradation (RealWorldDegradation): The pipeline, on the CPU.
        seed (int): Seed of this image.
        what (str): The image, for size errors.

    Returns:
        ndarray: (H / 4, W / 4, 3) uint8 RGB LR image.
    """
    check_degradable_size(degradation.options, hr.shape[0], hr.shape[1], SUPPORTED_SCALE, what)
    set_random_seed(seed)
    kernels = draw_degradation_kernels(degradation.options)
    batch = torch.from_numpy(np.ascontiguousarray(hr.transpose(2, 0, 1))).float().unsqueeze(0) / 255.
    lq = degradation(batch, *(kernels[key].unsqueeze(0) for key in KERNEL_BATCH_KEYS))
    return np.round(lq[0].permute(1, 2, 0).numpy() * 255.).astype(np.uint8)


def degradation_block(opt_path):
    """The ``realworld_degradation`` block of the training dataset in a YAML, or {} (Real-ESRGAN's values)."""
    if opt_path is None:
        return {}
    block = train_degradation_block(read_options(opt_path))
    if block is None:
        raise OptionError(f"--opt {opt_path}: no training dataset sets '{BLOCK_KEY}'")
    return block


def write_degraded_set(src, dst, seed, block):
    """Copy SRC's images to DST and write the degraded LR of every GT to DST/lq (see the module docstring).

    Args:
        src (str): CUFED5-layout folder.
        dst (str): Output folder; ``dst/lq`` must not exist.
        seed (int): Seed of the set.
        block (dict): ``realworld_degradation`` options.

    Returns:
        int: Number of LR images written.
    """
    names = list_image_names(src, '--src')
    gt_names = [name for name in names if name.endswith(GT_SUFFIX)]
    if not gt_names:
        raise MissingFileError(f"--src {src}: no CUFED5 ground truth '*{GT_SUFFIX}'")
    lq_dir = osp.join(dst, LQ_FOLDER)
    if osp.exists(lq_dir):
        raise OptionError(f"--dst {dst}: '{lq_dir}' already exists; the set is written once (delete it to rewrite)")
    if osp.abspath(src) == osp.abspath(dst):
        raise OptionError(f'--dst must differ from --src ({src})')
    degradation = RealWorldDegradation(parse_realworld_options(block), SUPPORTED_SCALE, 'cpu')
    staging_dir = osp.join(dst, f'.{LQ_FOLDER}.incomplete')  # renamed to lq/ once every image is written
    shutil.rmtree(staging_dir, ignore_errors=True)
    os.makedirs(staging_dir)
    for index, name in enumerate(gt_names):
        path = osp.join(src, name)
        lq = degrade_image(
            mod_crop(read_image_rgb(path), SUPPORTED_SCALE), degradation, image_seed(seed, name), f"image '{path}'")
        if not cv2.imwrite(osp.join(staging_dir, name), cv2.cvtColor(lq, cv2.COLOR_RGB2BGR)):
            raise OSError(f"could not write '{osp.join(staging_dir, name)}'")
        print(f'[{index + 1}/{len(gt_names)}] {name}', file=sys.stderr)
    for name in names:
        shutil.copy2(osp.join(src, name), osp.join(dst, name))
    settings = {
        key: list(value) if isinstance(value, tuple) else value
        for key, value in resolved_settings(block).items()
    }
    with open(osp.join(dst, 'degradation.yml'), 'w', encoding='utf-8') as file:
        yaml.safe_dump({'source': src, 'seed': seed, BLOCK_KEY: settings}, file, sort_keys=False)
    os.replace(staging_dir, lq_dir)
    return len(gt_names)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--src', required=True, help='CUFED5-layout folder (XXX_0.png GTs, XXX_1..5.png refs)')
    parser.add_argument('--dst', required=True, help='output folder (the LR images go to DST/lq)')
    parser.add_argument('--seed', type=int, default=0, help='seed of the set (default 0)')
    parser.add_argument(
        '--opt',
        default=None,
        help='YAML whose training dataset sets realworld_degradation '
        "(default: Real-ESRGAN's x4 values)")
    args = parser.parse_args(argv)
    try:
        count = write_degraded_set(args.src, args.dst, args.seed, degradation_block(args.opt))
    except UserInputError as error:
        print(f'make_degraded_testset: error: {error}', file=sys.stderr)
        return 1
    print(f'images: {count}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
