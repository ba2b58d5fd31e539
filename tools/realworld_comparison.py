"""Write the README's comparison of bicubic and real-world degraded LR images of demo photos.

Usage: python tools/realworld_comparison.py [--output docs/realworld_degradation.png] [--seeds 0 1]

Each row is a crop of a photo bundled with scikit-image; its panels are the PIL-bicubic x1/4 LR (the paper's
protocol) and LR images from Real-ESRGAN's second-order pipeline with its x4 values, one per seed, made as
``tools/make_degraded_testset.py`` makes them. Every panel is the LR shown x4 with nearest-neighbour up-sampling, so
that LR pixels stay visible, under a label (``frfsr_plugin/utils/comparison.py``, the builder of every comparison).
"""
import argparse
import sys

import frfsr_plugin  # noqa: F401  (torchvision alias for basicsr, then registration)
from frfsr_plugin.cli.demo_data import load_photo
from frfsr_plugin.data.realworld_degradation import parse_realworld_options
from frfsr_plugin.data.transforms import SUPPORTED_SCALE, make_lr_pair
from frfsr_plugin.ops.realworld_degradation import RealWorldDegradation
from frfsr_plugin.restoration.inference import to_batch
from frfsr_plugin.utils.comparison import labelled_grid, save_image

# isort: split
from make_degraded_testset import degrade_image  # sibling tool: Python puts tools/ on sys.path

CROPS = (('chelsea', 40, 140, 160, 224), ('coffee', 150, 190, 160, 224))  # photo, top, left, height, width


def comparison(seeds):
    """The comparison image: one row per crop, panels bicubic LR then one real-world LR per seed.

    Args:
        seeds (list[int]): Seeds of the real-world LR panels.

    Returns:
        Tensor: RGB in [0, 1], (3, H, W): rows of labelled LR panels shown at their HR size (x4, nearest neighbour).
    """
    degradation = RealWorldDegradation(parse_realworld_options({}), SUPPORTED_SCALE, 'cpu')
    rows = []
    for photo, top, left, height, width in CROPS:
        hr = load_photo(photo)[top:top + height, left:left + width]
        panels = [('bicubic LR (paper protocol)', make_lr_pair(hr, SUPPORTED_SCALE)[0])]
        panels += [(f'real-world LR, seed {seed}', degrade_image(hr, degradation, seed, photo)) for seed in seeds]
        rows.append([(label, to_batch(lr, 'cpu')) for label, lr in panels])
    return labelled_grid(rows, min_size=min(height for _, _, _, height, _ in CROPS))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--output', default='docs/realworld_degradation.png', help='PNG to write')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1], help='seeds of the real-world LR panels')
    args = parser.parse_args(argv)
    save_image(comparison(args.seeds), args.output)
    print(f'wrote {args.output}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
