"""Write the README's comparison of bicubic and real-world degraded LR images of demo photos.

Usage: python tools/realworld_comparison.py [--output docs/realworld_degradation.png] [--seeds 0 1]

Each row is a crop of a photo bundled with scikit-image; its panels are the PIL-bicubic x1/4 LR (the paper's
protocol) and LR images from Real-ESRGAN's second-order pipeline with its x4 values, one per seed, made as
``tools/make_degraded_testset.py`` makes them. Every panel is the LR shown x4 with nearest-neighbour up-sampling, so
that LR pixels stay visible, under a label.
"""
import argparse
import sys

import cv2
import numpy as np

import frfsr_plugin  # noqa: F401  (torchvision alias for basicsr, then registration)
from frfsr_plugin.cli.demo_data import load_photo, write_rgb
from frfsr_plugin.data.realworld_degradation import parse_realworld_options
from frfsr_plugin.data.transforms import SUPPORTED_SCALE, make_lr_pair
from frfsr_plugin.ops.realworld_degradation import RealWorldDegradation

# isort: split
from make_degraded_testset import degrade_image  # sibling tool: Python puts tools/ on sys.path

CROPS = (('chelsea', 40, 140, 160, 224), ('coffee', 150, 190, 160, 224))  # photo, top, left, height, width
LABEL_HEIGHT = 22
GAP = 6


def labelled(panel, label):
    """An (H, W, 3) uint8 panel under a white strip with ``label`` written in black."""
    strip = np.full((LABEL_HEIGHT, panel.shape[1], 3), 255, np.uint8)
    cv2.putText(strip, label, (4, LABEL_HEIGHT - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([strip, panel])


def stack(images, axis):
    """uint8 (H, W, 3) images side by side (``axis`` 1) or one above the other (``axis`` 0), with white gaps."""
    other = 1 - axis
    size = max(img.shape[other] for img in images)
    padded = [
        np.pad(
            img, [(0, size - img.shape[other]) if dim == other else (0, 0) for dim in range(3)], constant_values=255)
        for img in images
    ]
    gap_shape = [GAP, GAP, 3]
    gap_shape[other] = size
    pieces = []
    for img in padded:
        pieces += [img, np.full(gap_shape, 255, np.uint8)]
    return np.concatenate(pieces[:-1], axis=axis)


def comparison(seeds):
    """The comparison image: one row per crop, panels bicubic LR then one real-world LR per seed.

    Args:
        seeds (list[int]): Seeds of the real-world LR panels.

    Returns:
        ndarray: RGB uint8 image, rows of (22 + H, W) panels.
    """
    degradation = RealWorldDegradation(parse_realworld_options({}), SUPPORTED_SCALE, 'cpu')
    rows = []
    for photo, top, left, height, width in CROPS:
        hr = load_photo(photo)[top:top + height, left:left + width]
        panels = [('bicubic LR (paper protocol)', make_lr_pair(hr, SUPPORTED_SCALE)[0])]
        panels += [(f'real-world LR, seed {seed}', degrade_image(hr, degradation, seed, photo)) for seed in seeds]
        rows.append(
            stack([
                labelled(cv2.resize(lr, (width, height), interpolation=cv2.INTER_NEAREST), label)
                for label, lr in panels
            ],
                  axis=1))
    return stack(rows, axis=0)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--output', default='docs/realworld_degradation.png', help='PNG to write')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1], help='seeds of the real-world LR panels')
    args = parser.parse_args(argv)
    write_rgb(args.output, comparison(args.seeds))
    print(f'wrote {args.output}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
