"""The ``frfsr`` command: ``frfsr demo`` runs the whole two-stage flow on bundled photos."""
import argparse
import subprocess
import sys

from frfsr_plugin.utils.errors import UserInputError


def build_parser():
    parser = argparse.ArgumentParser(prog='frfsr', description='FRFSR reference-based super-resolution tools.')
    commands = parser.add_subparsers(dest='command', required=True)
    demo = commands.add_parser('demo', help='train and test a small FRFSR on photos bundled with scikit-image')
    demo.add_argument('--workdir', default='frfsr_demo', help='output folder (default: %(default)s)')
    demo.add_argument('--iters', type=int, default=150, help='stage-1 training iterations (default: %(default)s)')
    demo.add_argument(
        '--stage2-iters',
        type=int,
        default=40,
        help='stage-2 (feature reuse) training iterations, 0 to skip (default: %(default)s)')
    demo.add_argument('--gt-size', type=int, default=64, help='HR training crop, multiple of 4, >= 60')
    demo.add_argument('--batch-size', type=int, default=4, help='training batch size (default: %(default)s)')
    return parser


def main(argv=None):
    """Console entry point. Returns the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == 'demo':
            if args.gt_size % 4 or args.gt_size < 60:
                raise UserInputError(f'--gt-size must be a multiple of 4 and at least 60, got {args.gt_size}.')
            from frfsr_plugin.cli.demo import run_demo
            run_demo(args.workdir, args.iters, args.stage2_iters, args.gt_size, args.batch_size)
    except UserInputError as error:
        print(f'frfsr {args.command}: error: {error}', file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as error:
        print(f'frfsr {args.command}: error: a child command failed with exit code {error.returncode}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
