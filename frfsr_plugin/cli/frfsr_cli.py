"""The ``frfsr`` command: ``frfsr demo`` runs the whole two-stage flow on bundled photos; ``frfsr infer``
super-resolves your own LR images with your own references; ``frfsr rank`` ranks candidate references for an LR."""
import argparse
import subprocess
import sys

from frfsr_plugin.utils.errors import UserInputError


def build_parser():
    parser = argparse.ArgumentParser(prog='frfsr', description='FRFSR reference-based super-resolution tools.')
    commands = parser.add_subparsers(dest='command', required=True)
    demo = commands.add_parser('demo', help='train and test a small FRFSR on photos bundled with scikit-image')
    demo.add_argument('--workdir', default='frfsr_demo', help='output folder (default: %(default)s)')
    demo.add_argument('--iters', type=int, default=200, help='stage-1 training iterations (default: %(default)s)')
    demo.add_argument(
        '--stage2-iters',
        type=int,
        default=20,
        help='iterations of each stage-2 run (with and without feature reuse), 0 to skip (default: %(default)s)')
    demo.add_argument('--gt-size', type=int, default=64, help='HR training crop, multiple of 4, >= 60')
    demo.add_argument('--batch-size', type=int, default=4, help='training batch size (default: %(default)s)')
    demo.add_argument(
        '--encoder-iters',
        type=int,
        nargs=2,
        default=(200, 100),
        metavar=('TEACHER', 'STUDENT'),
        help='texture-encoder teacher and student iterations (default: 200 100)')
    demo.add_argument(
        '--no-encoder-training',
        dest='train_encoder',
        action='store_false',
        help='skip the texture-encoder teacher/student training (the encoder stays random)')
    infer = commands.add_parser('infer', help='super-resolve LR images (x4) with reference images, any size')
    infer.add_argument('--opt', required=True, help='training or test YAML defining the networks')
    infer.add_argument('--weights', required=True, help='generator checkpoint written by basicsr train')
    infer.add_argument('--lr', required=True, help='LR image, or a folder of them')
    infer.add_argument(
        '--ref',
        action='append',
        help='reference image (or folder, matched by name); repeat for a reference set: every LR patch takes its '
        'best match over all references, each at its own size')
    infer.add_argument(
        '--ref-dir',
        help='an image or a folder of candidate references, all used as one reference set (with --ref too); other '
        'files in the folder are skipped with a warning')
    infer.add_argument(
        '--ref-canvas',
        default='decoupled',
        choices=('decoupled', 'padded'),
        help="decoupled: the networks run on the LR's own size, each reference keeps its own; padded: the papers' "
        'protocol, LR and reference (several: stitched side by side at one height) zero-padded to a common size '
        '(default: %(default)s)')
    infer.add_argument(
        '--top-k',
        type=int,
        help='rank the --ref-dir candidates (as frfsr rank) and use only the best K, with any --ref; prints the '
        'ranking')
    add_rerank_argument(infer)
    infer.add_argument('-o', '--output', required=True, help='SR image path (or output folder)')
    infer.add_argument('--gt', help='ground truth (or folder): print Y-PSNR/SSIM (crop 4), and LPIPS with weights')
    infer.add_argument('--lpips-weights', help="torchvision AlexNet weights for LPIPS (alexnet-owt-7be5be79.pth)")
    infer.add_argument('--compare', action='store_true', help='also write <output>_compare.png: bicubic|SR|Ref|GT')
    infer.add_argument(
        '--explain',
        action='store_true',
        help='also write <output>_explain.png (match confidence, reference drawn from, warped reference, SR) and print '
        'a summary of the matches')
    infer.add_argument(
        '--explain-threshold',
        type=float,
        help='cosine similarity in [-1, 1]: the summary gives the share of pixels matched above it (default: 0.5, '
        'DEFAULT_THRESHOLD of restoration/explanation.py)')
    infer.add_argument('--device', default='cpu', choices=('cpu', 'cuda'), help='default: %(default)s')
    infer.add_argument('--max-corr-elements', type=int, help='memory budget of one matching chunk (elements)')
    infer.add_argument(
        '--tile',
        type=int,
        help='restore in overlapping tiles of this many LR pixels (>= 32; 0: whole image); default: the '
        "YAML's val.tile, else chosen by --max-memory-mb, else the whole image")
    infer.add_argument(
        '--tile-overlap', type=int, help="LR pixels shared by neighbouring tiles (<= tile / 3; default: 16)")
    infer.add_argument(
        '--max-memory-mb',
        type=float,
        help='peak memory budget in MiB (process RSS on CPU): picks the tile size and matching chunk, and stops '
        'with an error if an image cannot fit')
    rank = commands.add_parser('rank', help='rank candidate references for an LR image (texture encoder only)')
    rank.add_argument('--opt', required=True, help='training or test YAML defining network_extractor')
    rank.add_argument('--lr', required=True, help='LR image')
    rank.add_argument('--ref-dir', required=True, help='a folder of candidate references (other files are skipped)')
    add_rerank_argument(rank)
    rank.add_argument('--device', default='cpu', choices=('cpu', 'cuda'), help='default: %(default)s')
    return parser


def add_rerank_argument(parser):
    parser.add_argument(
        '--rerank',
        type=int,
        help='how many of the best candidates by global descriptor are re-ranked by dense match score (default: 10, '
        'and at least --top-k)')


def main(argv=None):
    """Console entry point. Returns the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == 'demo':
            if args.gt_size % 4 or args.gt_size < 60:
                raise UserInputError(f'--gt-size must be a multiple of 4 and at least 60, got {args.gt_size}.')
            if args.iters < 1 or min(args.encoder_iters) < 1 or args.stage2_iters < 0:
                raise UserInputError('--iters and both --encoder-iters must be at least 1 and --stage2-iters at least '
                                     f'0, got {args.iters}, {list(args.encoder_iters)} and {args.stage2_iters}.')
            from frfsr_plugin.cli.demo import run_demo
            run_demo(
                args.workdir,
                args.iters,
                args.stage2_iters,
                args.gt_size,
                args.batch_size,
                train_encoder=args.train_encoder,
                encoder_iters=tuple(args.encoder_iters))
        elif args.command == 'rank':
            from frfsr_plugin.cli.rank import run_rank
            run_rank(args)
        else:
            from frfsr_plugin.cli.infer import run_infer
            run_infer(args)
    except UserInputError as error:
        print(f'frfsr {args.command}: error: {error}', file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as error:
        print(f'frfsr {args.command}: error: a child command failed with exit code {error.returncode}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
