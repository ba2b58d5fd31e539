"""Matching accuracy of a contrastive texture encoder on image pairs related by fixed random homographies.

Usage: python tools/matching_accuracy.py --weights CKPT|random --data FOLDER [--lr-up] [--pairs N] [--seed S]
                                         [--size 160] [--border 10]

``CKPT`` is any encoder checkpoint (a ``net_g_*.pth`` of the texture-encoder training, or C2-Matching's
``feature_extraction.pth``); ``random`` is an untrained encoder initialised with seed S. Each of the first N images of
FOLDER (sorted by name) is resized to SIZE x SIZE and warped by the homography of the validation dataset with
``homography_seed`` S, so equal seeds give identical pairs. Branch 1 encodes the HR image, or its PIL-bicubic
x1/4 down, x4 up version with ``--lr-up`` (as in restoration); branch 2 the warped image. Prints ``pairs: N`` and
``matching_accuracy: A``, the mean over pairs of the fraction of valid positions whose best match lies within one
feature pixel of the truth (positions whose true match lies within BORDER pixels of the image edge are left out).
"""
import argparse
import sys

import torch

import frfsr_plugin  # noqa: F401  (compat alias before basicsr is imported)
from frfsr_plugin.archs.contrastive_encoder_arch import FRFSRContrastiveEncoder
from frfsr_plugin.metrics.matching_accuracy import held_out_matching_accuracy
from frfsr_plugin.utils.errors import UserInputError


def build_encoder(weights, seed):
    """The encoder from a checkpoint path, or randomly initialised with ``seed`` for ``weights == 'random'``."""
    if weights == 'random':
        torch.manual_seed(seed)
        return FRFSRContrastiveEncoder(pretrained=False).eval()
    return FRFSRContrastiveEncoder(pretrained=weights).eval()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--weights', required=True, help="encoder checkpoint, or 'random' for an untrained encoder")
    parser.add_argument('--data', required=True, help='folder of images')
    parser.add_argument('--lr-up', action='store_true', help='branch 1 encodes the LR-up image (restoration use)')
    parser.add_argument('--pairs', type=int, default=None, help='number of pairs (default: one per image)')
    parser.add_argument('--seed', type=int, default=0, help='homography seed (and init seed of --weights random)')
    parser.add_argument('--size', type=int, default=160, help='image side after resizing (multiple of 4)')
    parser.add_argument('--border', type=float, default=10, help='border of valid positions in pixels')
    args = parser.parse_args(argv)
    try:
        encoder = build_encoder(args.weights, args.seed)
        accuracy, count = held_out_matching_accuracy(encoder, args.data, args.pairs, args.seed, args.size, args.lr_up,
                                                     args.border)
    except UserInputError as error:
        print(f'matching_accuracy: error: {error}', file=sys.stderr)
        return 1
    print(f'pairs: {count}')
    print(f'matching_accuracy: {accuracy:.4f}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
