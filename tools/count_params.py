"""Print the parameter count of every network in an options YAML: ``<network_key> <arch_type> <params>``.

Usage: python tools/count_params.py -opt options/frfsr_stage1.yml

Networks are constructed with random initialisation (``pretrained: false``, no ``pretrained_base``), so no weights
file is needed.
"""
import argparse
import sys

from frfsr_plugin.utils.errors import UserInputError
from frfsr_plugin.utils.options import load_plugins

RANDOM_INIT = {
    'pretrained': False,
    'pretrained_base': None,
    'vgg16_pretrained': False
}  # weight-file options and their random-init values


def count_networks(opt):
    """Build every top-level ``network_*`` option and count its parameters.

    Args:
        opt (dict): Parsed options YAML.

    Returns:
        list[tuple[str, str, int]]: (network key, arch type, number of parameters).
    """
    from basicsr.archs import build_network
    rows = []
    for key, net_opt in opt.items():
        if not key.startswith('network_'):
            continue
        net_opt = dict(net_opt, **{key: value for key, value in RANDOM_INIT.items() if key in net_opt})
        net = build_network(net_opt)
        rows.append((key, net_opt['type'], sum(p.numel() for p in net.parameters())))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('-opt', required=True, help='options YAML')
    args = parser.parse_args(argv)
    try:
        for key, arch_type, params in count_networks(load_plugins(args.opt)):
            print(f'{key} {arch_type} {params}')
    except UserInputError as error:
        print(f'count_params: error: {error}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
