"""Measure the bytes-per-pixel constants of ``frfsr_plugin/restoration/memory.py`` (CPU, float32, batch 1, no grad).

Usage: python tools/measure_memory.py [--quick]

Each figure is the peak resident memory (``ru_maxrss``) of a fresh child process minus its resident memory just
before the measured call (``/proc/self/statm``), at two sizes; the constant is the slope between them (bytes per HR
output pixel), which removes fixed overheads:

  * ``global``: contrastive encoder, correspondence (matching with the smallest chunk, VGG19 features, flows,
    warping) and SIFE on an LR canvas of 64x64 and 128x128; the analytic matching buffers are subtracted;
  * ``restoration <arch>``: one generator forward on an LR tile of 48x48 and 96x96, with a synthetic context (random
    Ref features and pre-offsets) created before the baseline, so only the generator's own memory is measured.
"""
import argparse
import json
import subprocess
import sys

from frfsr_plugin.restoration.pipeline import random_reference_network_options

CHILD = r'''
import json, os, resource, torch
import frfsr_plugin  # noqa: F401
from basicsr.archs import build_network
from frfsr_plugin.restoration.memory import matching_bytes
from frfsr_plugin.restoration.pipeline import ReferencePipeline

torch.set_num_threads(2)
kind, options, lr = {kind!r}, {options!r}, {lr!r}


def rss():
    with open('/proc/self/statm') as statm:
        return int(statm.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


def context(lr, sife_channels, reuse_channels):
    ref = tuple(torch.rand(1, c, s * lr, s * lr) for c, s in ((64, 4), (128, 2), (256, 1)))
    return {{'pre_offsets': tuple(torch.randn(1, 18, s * lr, s * lr) * 8 for s in (4, 2, 1)), 'ref_feats': ref,
             'warped_ref_feats': tuple(torch.rand_like(feat) for feat in ref),
             'sife_feat': torch.rand(1, sife_channels, lr, lr),
             'reuse_feat': torch.rand(1, reuse_channels, 4 * lr, 4 * lr)}}


with torch.no_grad():
    if kind == 'global':
        pipeline = ReferencePipeline.from_options(options)
        lq, lq_up, ref = torch.rand(1, 3, lr, lr), torch.rand(1, 3, 4 * lr, 4 * lr), torch.rand(1, 3, 4 * lr, 4 * lr)
        base = rss()
        out = pipeline.reference_context(lq, lq_up, ref)
        extra = matching_bytes((lr, lr), pipeline.correspondence.max_corr_elements)
    else:
        net = build_network(dict(options)).eval()
        lq = torch.rand(1, 3, lr, lr)
        ctx = context(lr, options.get('sife_channels', 64), options.get('num_feat', 64))
        base = rss()
        out = net(lq, ctx)
        extra = 0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps(peak - base - extra))
'''

FROZEN = random_reference_network_options(network_map={'max_corr_elements': 1})  # the smallest matching chunks
GENERATORS = {
    'FRFSRNet num_feat 64': {
        'type': 'FRFSRNet',
        'dcn_backend': 'pytorch'
    },
    'FRFSRNet num_feat 64 torchvision': {
        'type': 'FRFSRNet'
    },
    'FRFSRNet num_feat 16': {
        'type': 'FRFSRNet',
        'num_feat': 16,
        'num_res_blocks': 1,
        'sife_channels': 8,
        'dcn_backend': 'pytorch'
    },
    'FRFSRStage2Net num_feat 64': {
        'type': 'FRFSRStage2Net',
        'dcn_backend': 'pytorch'
    },
    'C2MatchingRestorationNet ngf 64': {
        'type': 'C2MatchingRestorationNet',
        'dcn_backend': 'pytorch'
    },
    'C2MatchingRestorationNet ngf 16': {
        'type': 'C2MatchingRestorationNet',
        'ngf': 16,
        'n_blocks': 2,
        'dcn_backend': 'pytorch'
    },
}


def peak_bytes(kind, options, lr):
    code = CHILD.format(kind=kind, options=options, lr=lr)
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def bytes_per_pixel(kind, options, sizes):
    """Slope of the peak extra memory between two LR sizes, per HR pixel (4x the LR on each side)."""
    (small, large) = sizes
    peaks = [peak_bytes(kind, options, lr) for lr in sizes]
    return (peaks[1] - peaks[0]) / (16 * (large * large - small * small)), peaks


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--quick', action='store_true', help='only the stage-1 FRFSRNet and the global part')
    args = parser.parse_args()
    jobs = [('global', 'global', FROZEN, (64, 128))]
    for name, options in GENERATORS.items():
        if not args.quick or name == 'FRFSRNet num_feat 64':
            jobs.append((f'restoration {name}', 'restoration', options, (48, 96)))
    for label, kind, options, sizes in jobs:
        slope, peaks = bytes_per_pixel(kind, options, sizes)
        print(f'{label}: {slope:.0f} bytes per HR pixel (peak extra {peaks[0] / 2**20:.0f} / '
              f'{peaks[1] / 2**20:.0f} MB at LR {sizes[0]} / {sizes[1]})')


if __name__ == '__main__':
    main()
