"""Robustness of a trained RefSR model to its reference, as one table (FRFSR paper, Tables III/IV and Fig. 10).

Usage: python tools/evaluate_robustness.py -opt OPTIONS.yml --weights net_g.pth --dataroot CUFED5_FOLDER
           [--conditions level1 shuffle_hard ...] [--max-images N] [--output table.md] [--device cpu|cuda]
           [--irrelevant-offset K] [--shuffle-seed S] [--max-corr-elements M]

The model (stage 1 or two-stage) is built from the options YAML and the generator weights exactly as for
``basicsr test`` (:class:`frfsr_plugin.restoration.inference.RefSRInferencer`). Each condition runs the CUFED5 folder
through ``RefSRTestDataset`` with other reference options:

  level1 .. level5  the CUFED5 reference of that similarity level (Table III, L1-L4 and our L5)
  lr                the bicubic-upsampled LR image as reference (Table III, LR)
  shuffle_easy      the level-1 reference tile-shuffled on a 2x2 grid (Fig. 10, easy)
  shuffle_medium    ... on a 4x4 grid (medium)
  shuffle_hard      ... on an 8x8 grid (hard)
  irrelevant        the level-1 reference of sample (i + K) mod N for sample i (Table IV's irrelevant references;
                    N is the number of groups in the folder, also with --max-images)
  bicubic           no model: bicubic up-sampling of the LR (the baseline row)

PSNR/SSIM are BasicSR's ``calculate_psnr``/``calculate_ssim`` on the Y channel with a 4-pixel border, averaged over
the images, as in the models' validation. The table goes to stdout (and to ``--output``), followed by one
``name: value`` line per figure (``images``, ``<condition>_psnr``, ``<condition>_ssim``). Progress goes to stderr.
"""
import argparse
import os
import sys

import numpy as np
import torch
from torch.utils.data import Subset

import frfsr_plugin  # noqa: F401  (torchvision alias for basicsr, then registration)
from frfsr_plugin.data.reference_conditions import REFERENCE_CONDITIONS, reference_condition_options
from frfsr_plugin.metrics.evaluation import CROP_BORDER, evaluate_images
from frfsr_plugin.restoration.inference import RefSRInferencer
from frfsr_plugin.utils.errors import MissingFileError, OptionError, UserInputError
from frfsr_plugin.utils.options import read_options

# isort: split
from basicsr.data import build_dataloader, build_dataset
from basicsr.utils import set_random_seed, tensor2img


def y_psnr_ssim(sr, gt):
    """Y-channel PSNR and SSIM with a 4-pixel border, as validation computes them (``metrics/evaluation.py``).

    Args:
        sr (Tensor): (1, 3, H, W) RGB in [0, 1].
        gt (Tensor): (1, 3, H, W) RGB in [0, 1].

    Returns:
        tuple[float, float]: PSNR (dB) and SSIM.
    """
    scores = evaluate_images(tensor2img([sr.detach().cpu()]), tensor2img([gt.detach().cpu()]))
    return scores['psnr'], scores['ssim']


def evaluate(inferencer, dataset, num_images):
    """Mean Y-PSNR/SSIM of a model over the first ``num_images`` samples of a test set.

    Args:
        inferencer (RefSRInferencer | None): The model; None scores the bicubic-upsampled LR (``lq_up``) instead.
        dataset (Dataset): ``RefSRTestDataset``.
        num_images (int): Number of samples.

    Returns:
        tuple[float, float]: Mean PSNR (dB) and SSIM.
    """
    scores = []
    for batch in build_dataloader(Subset(dataset, range(num_images)), {'phase': 'test'}):
        height, width = batch['gt'].shape[-2:]
        if inferencer is None:
            sr = batch['lq_up']
        else:
            sr = inferencer.restore(batch, inferencer.tile_size, inferencer.max_corr_elements).sr
        scores.append(y_psnr_ssim(sr[..., :height, :width], batch['gt']))
    return tuple(np.mean(scores, axis=0).tolist())


def markdown_table(results, irrelevant_offset):
    """Rows ``| condition | reference | PSNR (dB) | SSIM |`` for ``results`` (condition -> (psnr, ssim))."""
    rows = ['| condition | reference | PSNR (dB) | SSIM |', '|---|---|---|---|']
    for condition, (psnr, ssim) in results.items():
        reference = REFERENCE_CONDITIONS[condition].format(offset=irrelevant_offset)
        rows.append(f'| {condition} | {reference} | {psnr:.2f} | {ssim:.4f} |')
    return '\n'.join(rows) + '\n'


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('-opt', required=True, help='training or test options YAML that defines the model')
    parser.add_argument('--weights', required=True, help='generator checkpoint (net_g_*.pth)')
    parser.add_argument('--dataroot', required=True, help='CUFED5 folder: XXX_0.png GTs and XXX_1..5.png references')
    parser.add_argument(
        '--conditions',
        nargs='+',
        default=list(REFERENCE_CONDITIONS),
        help=f"default: {' '.join(REFERENCE_CONDITIONS)}")
    parser.add_argument('--max-images', type=int, help='evaluate only the first N images (default: all)')
    parser.add_argument('--output', help='also write the table to this Markdown file')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu', choices=('cpu', 'cuda'))
    parser.add_argument('--irrelevant-offset', type=int, default=1, help='K of the irrelevant condition (default: 1)')
    parser.add_argument('--shuffle-seed', type=int, default=0, help='ref_shuffle_seed of the shuffle conditions')
    parser.add_argument('--max-corr-elements', type=int, help="override network_map's matching chunk budget")
    return parser.parse_args(argv)


def check_arguments(args):
    """One clear error for arguments that would otherwise fail late (after hours of testing) or with a traceback."""
    unknown = [condition for condition in args.conditions if condition not in REFERENCE_CONDITIONS]
    if unknown:
        raise OptionError(f"--conditions: unknown condition(s) {', '.join(unknown)}; choose from: "
                          f"{', '.join(REFERENCE_CONDITIONS)}")
    if args.max_images is not None and args.max_images < 1:
        raise OptionError(f'--max-images must be at least 1, got {args.max_images}')
    if not os.path.isdir(args.dataroot):
        raise MissingFileError(f"--dataroot: folder '{args.dataroot}' does not exist")
    if args.output and not os.path.isdir(os.path.dirname(os.path.abspath(args.output))):
        raise MissingFileError(f"--output: the folder of '{args.output}' does not exist")
    if args.device == 'cuda' and not torch.cuda.is_available():
        raise OptionError('--device cuda: no CUDA device is available; use --device cpu')


def run(args):
    """Evaluate every requested condition; returns the Markdown table and the ``name: value`` lines."""
    check_arguments(args)
    opt = read_options(args.opt)
    datasets = {}  # all built first, so that a missing reference file stops the run before the model is built
    for condition in args.conditions:
        datasets[condition] = build_dataset(
            reference_condition_options(condition, args.dataroot, opt.get('scale', 4), args.irrelevant_offset,
                                        args.shuffle_seed))
    num_images = min(len(dataset) for dataset in datasets.values())  # the same GT groups under every condition
    num_images = min(num_images, args.max_images or num_images)
    if opt.get('manual_seed') is not None:  # as `basicsr test`: random-init frozen parts (tests, demo) reproduce
        set_random_seed(opt['manual_seed'])
    inferencer = RefSRInferencer(args.opt, args.weights, args.device, args.max_corr_elements)
    results = {}
    for condition, dataset in datasets.items():
        results[condition] = evaluate(None if condition == 'bicubic' else inferencer, dataset, num_images)
        print(f'{condition}: PSNR {results[condition][0]:.2f} dB, SSIM {results[condition][1]:.4f}', file=sys.stderr)
    figures = [f'images: {num_images}'] + [
        f'{condition}_{name}: {value:.{digits}f}' for condition, (psnr, ssim) in results.items()
        for name, value, digits in (('psnr', psnr, 4), ('ssim', ssim, 6))
    ]
    return markdown_table(results, args.irrelevant_offset), figures


def main(argv=None):
    args = parse_args(argv)
    try:
        table, figures = run(args)
    except UserInputError as error:
        print(f'evaluate_robustness: error: {error}', file=sys.stderr)
        return 1
    print(table)
    if args.output:
        with open(args.output, 'w', encoding='utf-8') as file:
            file.write(f'# Robustness to the reference: {args.weights} ({args.opt}) on {args.dataroot}, '
                       f'Y channel, {CROP_BORDER}-pixel border\n\n{table}')
    print('\n'.join(figures))
    return 0


if __name__ == '__main__':
    sys.exit(main())
