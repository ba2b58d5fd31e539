"""Convert a public checkpoint into this plugin's parameter names, as a BasicSR checkpoint ``{'params': ...}``.

Usage: python tools/convert_checkpoint.py --source NAME INPUT.pth OUTPUT.pth [--arch-options key=value ...]

The converted weights are loaded strictly into the target network (default, full-size arguments plus
``--arch-options``); if anything does not fit, the tool names the missing and unexpected keys and shape mismatches in
one line, exits with status 1 and writes nothing. The output is written atomically.
"""
import argparse
import sys
import textwrap

from frfsr_plugin.conversion.converter import convert_checkpoint, parse_arch_options
from frfsr_plugin.conversion.sources import SOURCES
from frfsr_plugin.utils.errors import UserInputError


def sources_help():
    """One paragraph per source: what it is, and which network and YAML key it feeds."""
    lines = ['sources (--source):']
    for source in SOURCES.values():
        lines.append(f'  {source.name}')
        lines += textwrap.wrap(source.summary, 100, initial_indent=' ' * 6, subsequent_indent=' ' * 6)
        lines.append(f'      -> {source.network.__name__}, YAML {source.yaml_key}')
    return '\n'.join(lines)


def build_parser():
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        epilog=sources_help() + '\n\n--arch-options takes constructor arguments of the target network for checkpoints '
        'of non-default size,\ne.g. `--arch-options num_feat=32 num_res_blocks=8` (values are YAML scalars).',
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--source', required=True, choices=list(SOURCES), metavar='NAME', help='checkpoint format')
    parser.add_argument('input', help='checkpoint to convert')
    parser.add_argument('output', help='converted checkpoint to write')
    parser.add_argument(
        '--arch-options',
        nargs='+',
        default=[],
        metavar='KEY=VALUE',
        help='non-default constructor arguments of the target network')
    parser.add_argument(
        '--param-key',
        default='params_ema',
        help="state-dict key in BasicSR checkpoints; falls back to 'params', then to a plain state dict "
        '(default: params_ema)')
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        result = convert_checkpoint(args.source, args.input, args.output, parse_arch_options(args.arch_options),
                                    args.param_key)
    except UserInputError as error:
        print(f'convert_checkpoint: error: {error}', file=sys.stderr)
        return 1
    print(f"convert_checkpoint: wrote '{args.output}': {result.network}, {result.num_tensors} tensors, "
          f'{result.num_params:,} parameters ({args.source}, {result.naming} naming); use it as '
          f'{SOURCES[args.source].yaml_key}.')
    return 0


if __name__ == '__main__':
    sys.exit(main())
