"""Measure the bytes-per-pixel constants of ``frfsr_plugin/restoration/memory.py`` (CPU, float32, batch 1, no grad).

Usage: python tools/measure_memory.py [--quick]

Each figure is the peak resident memory (``ru_maxrss``) of a fresh child process minus its resident memory just
before the measured call (``/proc/self/statm``), at two sizes; the constant is the slope between them (bytes per HR
output pixel), which removes fixed overheads:

  * ``global``: contrastive encoder, correspondence (matching with the smallest chunk, VGG19 features, flows,
    warping) and SIFE on an LR canvas of 64x64 and 128x128; the analytic matching buffers are subtracted;
  * ``global reference``: the same for an LR of 32x32 and a reference of its own size, 512x512 and 1024x1024 (the
    slope is per HR pixel of the reference);
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
from frfsr_plugin.utils.cpu_allocator import return_freed_cpu_memory

torch.set_num_threads(2)
return_freed_cpu_memory()  # the allocator setting of a run under a budget (RefSRInferencer)
kind, options, lr, ref_side = {kind!r}, {options!r}, {lr!r}, {ref_side!r}


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
    if kind == 'global':  # the reference padded to the LR canvas (ref_side None) or of its own size
        pipeline = ReferencePipeline.from_options(options)
        lq, lq_up = torch.rand(1, 3, lr, lr), torch.rand(1, 3, 4 * lr, 4 * lr)
        ref = torch.rand(1, 3, 4 * lr, 4 * lr) if ref_side is None else [torch.rand(1, 3, ref_side, ref_side)]
        grids = None if ref_side is None else [(ref_side // 4, ref_side // 4)]
        base = rss()
        out = pipeline.reference_context(lq, lq_up, ref)
        extra = matching_bytes((lr, lr), pipeline.correspondence.max_corr_elements, grids)
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


def peak_bytes(kind, options, lr, ref_side=None):
    code = CHILD.format(kind=kind, options=options, lr=lr, ref_side=ref_side)
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def measured_pixels(lr, ref_side):
    """HR pixels a measurement is charged per: the LR canvas's, or those of a reference of its own size."""
    return 16 * lr * lr if ref_side is None else ref_side * ref_side


def slope_and_intercept(kind, options, points):
    """Slope (bytes per HR pixel) and intercept (bytes) of the peak extra memory between two sizes.

    Args:
        kind (str): ``'global'`` or ``'restoration'``.
        options (dict): The networks' options.
        points (tuple[tuple[int, int | None]]): Two (LR side, reference side or None) sizes.

    Returns:
        tuple[float, float, list[int]]: The slope, the intercept at the smaller size and the two peaks.
    """
    peaks = [peak_bytes(kind, options, lr, ref_side) for lr, ref_side in points]
    small, large = (measured_pixels(*point) for point in points)
    slope = (peaks[1] - peaks[0]) / (large - small)
    return slope, peaks[0] - slope * small, peaks


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--quick', action='store_true', help='only the stage-1 FRFSRNet and the global part')
    args = parser.parse_args()
    jobs = [('global', 'global', FROZEN, ((64, None), (128, None))),
            ('global reference', 'global', FROZEN, ((32, 512), (32, 1024)))]
    for name, options in GENERATORS.items():
        if not args.quick or name == 'FRFSRNet num_feat 64':
            jobs.append((f'restoration {name}', 'restoration', options, ((48, None), (96, None))))
    for label, kind, options, points in jobs:
        slope, intercept, peaks = slope_and_intercept(kind, options, points)
        sizes = ' / '.join(f'LR {lr}' + ('' if ref is None else f' Ref {ref}') for lr, ref in points)
        print(f'{label}: {slope:.0f} bytes per HR pixel, fixed {intercept / 2**20:.0f} MB (peak extra '
              f'{peaks[0] / 2**20:.0f} / {peaks[1] / 2**20:.0f} MB at {sizes})')


if __name__ == '__main__':
    main()
