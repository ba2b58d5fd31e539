"""Tiled inference of a big image under a memory budget: LR 480x270 with a 1920x1080 Ref, full-size networks.

Usage: python tools/big_image_check.py [--max-memory-mb 8000] [--tile N] [--untiled] [--lr-size 270 480]
                                       [--dcn-backend pytorch] [--limit-mb 18000] [--workdir big_image_check]

It writes an options YAML with FRFSR's full-size networks (FRFSRNet defaults, ``pretrained: false`` everywhere, so
no weights are needed) and a random generator checkpoint, makes an HR photo of 4x ``--lr-size`` (skimage's coffee,
resized), its PIL-bicubic LR and a Ref of the HR size (the photo mirrored), and runs ``RefSRInferencer`` in a child
process: once under ``--max-memory-mb`` (tile size chosen by the budget unless ``--tile`` is given) and, with
``--untiled``, once on the whole canvas without a budget. Each child runs under an address-space limit of
``--limit-mb`` (so it fails instead of exhausting the machine) and reports the wall time of the image, its peak
resident memory (``VmHWM``, reset after the networks are built) and the tile size; after both runs it prints how
much their SR images differ.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from os import path as osp

import numpy as np
import torch
import yaml

import frfsr_plugin  # noqa: F401  (torchvision alias for basicsr, then registration)

CHILD = r'''
import json, re, resource, sys, time
import numpy as np
limit_mb, opt, weights, lr_path, ref_path, budget_mb, tile, out_path = sys.argv[1:]
resource.setrlimit(resource.RLIMIT_AS, (int(limit_mb) << 20, int(limit_mb) << 20))
import torch
from frfsr_plugin.data.transforms import read_image_rgb
from frfsr_plugin.restoration.inference import RefSRInferencer
torch.manual_seed(0)  # the same random frozen networks (pretrained: false) in every run
lr, ref = read_image_rgb(lr_path), read_image_rgb(ref_path)
inferencer = RefSRInferencer(opt, weights, tile=None if tile == 'none' else int(tile),
                             max_memory_mb=None if budget_mb == 'none' else float(budget_mb))
inputs = inferencer.prepare_inputs(lr, ref, ref_path)
tile_size, corr_elements = inputs.tile_size, inputs.max_corr_elements  # what the call picks
del inputs
with open('/proc/self/clear_refs', 'w') as clear_refs:
    clear_refs.write('5')  # peak of the image, not of building the networks
start = time.perf_counter()
sr = inferencer(lr, ref, ref_path)
seconds = time.perf_counter() - start
np.save(out_path, sr)
with open('/proc/self/status') as status:
    peak = int(re.search(r'VmHWM:\s+(\d+) kB', status.read()).group(1)) << 10
print(json.dumps({'seconds': seconds, 'peak_mb': peak / 2**20, 'baseline_mb': inferencer.baseline_memory / 2**20,
                  'tile': tile_size, 'overlap': inferencer.tile_overlap, 'max_corr_elements': corr_elements}))
'''


def write_inputs(workdir, dcn_backend, lr_size):
    """Options YAML, random checkpoint, LR and Ref images under ``workdir``; returns their paths."""
    import cv2
    from basicsr.archs import build_network
    from skimage import data as skimage_data

    from frfsr_plugin.data.transforms import pil_bicubic_resize
    from frfsr_plugin.restoration.pipeline import random_reference_network_options
    os.makedirs(workdir, exist_ok=True)
    networks = dict(random_reference_network_options(), network_g={'type': 'FRFSRNet', 'dcn_backend': dcn_backend})
    opt = {'name': 'big_image_check', 'model_type': 'FRFSRModel', 'scale': 4, 'num_gpu': 0, **networks, 'path': {}}
    paths = {name: osp.join(workdir, name) for name in ('options.yml', 'net_g.pth', 'lr.png', 'ref.png')}
    with open(paths['options.yml'], 'w', encoding='utf-8') as file:
        yaml.safe_dump(opt, file)
    torch.manual_seed(0)
    torch.save({'params': build_network(dict(networks['network_g'])).state_dict()}, paths['net_g.pth'])
    height, width = lr_size
    hr = cv2.resize(skimage_data.coffee(), (4 * width, 4 * height), interpolation=cv2.INTER_CUBIC)
    cv2.imwrite(paths['lr.png'], cv2.cvtColor(pil_bicubic_resize(hr, lr_size), cv2.COLOR_RGB2BGR))
    cv2.imwrite(paths['ref.png'], cv2.cvtColor(np.ascontiguousarray(hr[:, ::-1]), cv2.COLOR_RGB2BGR))
    return paths


def run_child(paths, budget_mb, tile, limit_mb, out_path):
    """Run one inference in a child process; returns its report, or None if it failed (printed)."""
    args = [paths[name] for name in ('options.yml', 'net_g.pth', 'lr.png', 'ref.png')]
    args = [str(limit_mb)] + args + [str(budget_mb), str(tile), out_path]
    start = time.perf_counter()
    result = subprocess.run([sys.executable, '-c', CHILD] + args, capture_output=True, text=True)
    if result.returncode != 0:
        print(f'  failed after {time.perf_counter() - start:.0f} s: {result.stderr.strip().splitlines()[-1]}')
        return None
    return json.loads(result.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--max-memory-mb', type=float, default=8000, help='budget of the tiled run (default 8000)')
    parser.add_argument('--tile', type=int, help='tile size of the budgeted run (default: chosen by the budget)')
    parser.add_argument('--untiled', action='store_true', help='also run the whole canvas without a budget')
    parser.add_argument('--lr-size', type=int, nargs=2, default=(270, 480), help='LR height and width')
    parser.add_argument('--dcn-backend', default='pytorch', help="FRFSRNet's dcn_backend (default: pytorch)")
    parser.add_argument('--limit-mb', type=int, default=18000, help='address-space limit of each run (default 18000)')
    parser.add_argument('--workdir', default='big_image_check', help='folder for inputs and outputs')
    args = parser.parse_args()
    paths = write_inputs(args.workdir, args.dcn_backend, tuple(args.lr_size))
    runs = [('tiled', args.max_memory_mb, args.tile)] + ([('untiled', 'none', None)] if args.untiled else [])
    outputs = {}
    for name, budget, tile in runs:
        print(f'{name} (budget {budget} MB, address-space limit {args.limit_mb} MB):', flush=True)
        outputs[name] = osp.join(args.workdir, f'sr_{name}.npy')
        report = run_child(paths, budget, 'none' if tile is None else tile, args.limit_mb, outputs[name])
        if report is None:
            del outputs[name]
            continue
        tile = f"{report['tile']} (overlap {report['overlap']})" if report['tile'] else 'whole canvas'
        print(
            f"  {report['seconds']:.0f} s, peak resident memory {report['peak_mb']:.0f} MB (networks "
            f"{report['baseline_mb']:.0f} MB), tile {tile}, max_corr_elements {report['max_corr_elements']}",
            flush=True)
    if len(outputs) == 2:
        levels = np.abs(np.load(outputs['tiled']).astype(int) - np.load(outputs['untiled']).astype(int))
        print(f'tiled vs whole SR (uint8): max {levels.max()} levels, mean {levels.mean():.4f}')


if __name__ == '__main__':
    main()
