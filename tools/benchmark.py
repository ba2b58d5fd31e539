"""Per-stage time and memory of FRFSR inference and training, side by side with the direct formulations.

Usage: python tools/benchmark.py [--quick] [--threads N] [--dcn-backend B] [--speed channels_last bf16 ...]
       python tools/benchmark.py --references [--quick] [--threads N] [--dcn-backend B]
       python tools/benchmark.py --retrieval [--threads N]

With ``--retrieval`` it times ``frfsr rank``'s ranking (``restoration/retrieval.py``, random-init encoder) of 200
CUFED5-size candidates (500x332 crops of scikit-image's photos, written as PNGs to a temporary folder) for one LR of
125x83: reading, global descriptors, and the re-ranking of the default shortlist, in one run.

With ``--references`` it measures only reference sets: 1, 3 and 5 CUFED5-size references (500x332 each) for one
LR of 125x83, full-size random-init networks (stage 1: FRFSRNet), on the decoupled canvas (the LR at its own size, the
references as one reference set) and on the stitched canvas of the padded protocol (the references side by side, the
LR zero-padded to the canvas / 4): the reference context (encoder, matching, VGG19, flows, SIFE) and the restoration
network, median seconds, and the peak extra RSS, each configuration in a fresh child process.

Otherwise it measures, in one run on this machine:
  * patch matching (fast shifted-product matcher vs the direct patch-vector matcher) at several LR sizes, with the
    fraction of identical arg-max matches;
  * peak memory of a training step of the DDF layers at batch 9, LR 40 (memory-lean autograd function vs the unfold
    formulation), each in a fresh child process;
  * two-stage inference at CUFED5 size (LR 125x83, Ref 500x332) with full-size random-init networks, per stage:
    encoder, correspondence (matching, flows, pre-offsets, VGG19), SIFE, Net1, Net2;
  * a stage-1 training step at batch 2, LR 40 (time after one warm-up step, and peak memory, in a child process);
  * without --quick, Net1 at CUFED5 size again with each speed option of ``frfsr_plugin/utils/speed.py``
    (channels_last, bf16 autocast) and the largest SR difference they cause.
``--speed`` applies speed options to Net1, Net2 and the trained net of the training step. Inference runs with freed
CPU memory retained, as ``frfsr infer`` and ``basicsr test`` do (``frfsr_plugin/utils/cpu_allocator.py``); the
training step keeps the C library's defaults, as ``basicsr train`` does.
Times are medians of repeated runs (one run for the large stages with --quick). The last lines are ``name: value``
pairs, one per figure.
"""
import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

import frfsr_plugin  # noqa: F401  (torchvision alias for basicsr, then registration)
from frfsr_plugin.ops.patch_match import match_patches, match_patches_direct
from frfsr_plugin.restoration.pipeline import (FeatureReuse, ReferencePipeline, build_reference_networks,
                                               random_reference_network_options)
from frfsr_plugin.utils.cpu_allocator import retain_freed_cpu_memory
from frfsr_plugin.utils.speed import SPEED_OPTIONS, autocast_context, speed_up_network

# isort: split
from basicsr.utils.registry import ARCH_REGISTRY

CUFED5_LR = (83, 125)  # (h, w) of a 332x500 CUFED5 image


def median_seconds(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_matcher(sizes, repeats):
    """Fast vs direct matcher on random 256-channel features; returns rows and the CUFED5-size figures."""
    rows, figures = [], {}
    for height, width in sizes:
        generator = torch.Generator().manual_seed(height * width)
        feat_in = torch.randn(1, 256, height, width, generator=generator)
        feat_ref = torch.randn(1, 256, height, width, generator=generator)
        with torch.no_grad():
            fast = median_seconds(lambda: match_patches(feat_in, feat_ref), repeats)
            direct = median_seconds(lambda: match_patches_direct(feat_in, feat_ref), repeats)
            agreement = (match_patches(feat_in, feat_ref)[0] == match_patches_direct(feat_in, feat_ref)[0]).float()
        rows.append(f'matcher LR {width}x{height}: direct {direct:.3f} s, fast {fast:.3f} s, '
                    f'speed-up {direct / fast:.2f}x, argmax agreement {agreement.mean():.6f}')
        if (height, width) == CUFED5_LR:
            figures.update(matcher_speedup=direct / fast, matcher_argmax_agreement=float(agreement.mean()))
    return rows, figures


CURRENT_RSS_MB = '''
import resource

def current_rss_mb():
    with open('/proc/self/statm') as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20
'''


def child(code):
    """Run ``code`` in a fresh interpreter and return its JSON result (isolates peak-RSS measurements)."""
    result = subprocess.run([sys.executable, '-c', CURRENT_RSS_MB + code], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


DDF_MEMORY_CODE = '''
import json, torch
import frfsr_plugin.archs.aggregation as aggregation
from frfsr_plugin.ops.ddf import ddf_mul_unfold
if {unfold}:
    aggregation.ddf_mul = ddf_mul_unfold
torch.set_num_threads({threads})
blocks = [aggregation.ResidualDDFBlock(64) for _ in range(10)]  # FRFSR: 2 blocks in each of the 5 TAAMs
sizes = [160, 80, 40, 80, 160]
inputs = [torch.randn(9, 64, s, s, requires_grad=True) for s in sizes for _ in range(2)]
base = current_rss_mb()
loss = sum(block(x).square().mean() for block, x in zip(blocks, inputs))
loss.backward()
print(json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base))
'''

TRAIN_STEP_CODE = '''
import json, time, torch
import frfsr_plugin
from basicsr.utils.registry import ARCH_REGISTRY
from frfsr_plugin.restoration.pipeline import ReferencePipeline, random_reference_network_options
from frfsr_plugin.utils.speed import speed_up_network
torch.set_num_threads({threads})
torch.manual_seed(0)
speed = {speed}
pipeline = ReferencePipeline.from_options(dict(random_reference_network_options(), speed=speed))
net = speed_up_network(ARCH_REGISTRY.get('FRFSRNet')(dcn_backend='{dcn_backend}'), speed)
optimizer = torch.optim.Adam(net.parameters(), 1e-4)
lq, gt, ref = torch.rand(2, 3, 40, 40), torch.rand(2, 3, 160, 160), torch.rand(2, 3, 160, 160)
lq_up = torch.nn.functional.interpolate(lq, scale_factor=4, mode='bicubic', align_corners=False)
times = []
base = current_rss_mb()
for _ in range({repeats} + 1):  # the first step warms up (first-call set-up of kernels and allocator), not timed
    start = time.perf_counter()
    loss = (pipeline.super_resolve(net, lq, lq_up, ref).sr - gt).abs().mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    times.append(time.perf_counter() - start)
times = sorted(times[1:])
print(json.dumps([times[len(times) // 2], resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base]))
'''

REFERENCE_SET_CODE = '''
import json, statistics, time, torch
import torch.nn.functional as F
import frfsr_plugin
from basicsr.utils.registry import ARCH_REGISTRY
from frfsr_plugin.restoration.pipeline import (ReferencePipeline, build_reference_networks,
                                               random_reference_network_options)
from frfsr_plugin.utils.cpu_allocator import retain_freed_cpu_memory
retain_freed_cpu_memory()  # as frfsr infer
torch.set_num_threads({threads})
torch.manual_seed(0)
pipeline = ReferencePipeline(*build_reference_networks(random_reference_network_options()))
net = ARCH_REGISTRY.get('FRFSRNet')(dcn_backend='{dcn_backend}').eval()
lq = torch.rand(1, 3, {lr_height}, {lr_width})
refs = [torch.rand(1, 3, 4 * {lr_height}, 4 * {lr_width}) for _ in range({count})]
if {stitched}:  # the padded protocol's canvas: references side by side, the LR zero-padded to the canvas / 4
    ref = torch.cat(refs, -1)
    lq = F.pad(lq, (0, ref.shape[-1] // 4 - lq.shape[-1]))
else:  # the decoupled canvas: the LR as it is, the references as one reference set
    ref = refs
lq_up = F.interpolate(lq, scale_factor=4, mode='bicubic', align_corners=False)
base = current_rss_mb()
context_seconds, restoration_seconds = [], []
with torch.no_grad():
    for _ in range({repeats}):
        start = time.perf_counter()
        context = pipeline.reference_context(lq, lq_up, ref)
        middle = time.perf_counter()
        pipeline.restore(net, lq, context)
        restoration_seconds.append(time.perf_counter() - middle)
        context_seconds.append(middle - start)
        del context
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base
with torch.no_grad():  # what the encoder's (lq_up, ref) interface recomputes for every reference after the first
    lr_branch = []
    for _ in range({repeats}):
        start = time.perf_counter()
        pipeline.extractor.feature_extraction_image1(lq_up)
        lr_branch.append(time.perf_counter() - start)
print(json.dumps([statistics.median(context_seconds), statistics.median(restoration_seconds), peak,
                  list(lq.shape[-2:]), statistics.median(lr_branch)]))
'''
REFERENCE_COUNTS = (1, 3, 5)


def bench_reference_sets(threads, dcn_backend, repeats):
    """Decoupled vs stitched canvas for 1, 3 and 5 CUFED5-size references (module docstring).

    Returns:
        tuple[list[str], dict[str, float]]: Printable rows and the figures (restoration-time ratios of 3 and 5
        references to 1, per canvas).
    """
    rows, results = [], {}
    for count in REFERENCE_COUNTS:
        for canvas in ('decoupled', 'stitched'):
            code = REFERENCE_SET_CODE.format(
                threads=threads,
                dcn_backend=dcn_backend,
                count=count,
                stitched=canvas == 'stitched',
                repeats=repeats,
                lr_height=CUFED5_LR[0],
                lr_width=CUFED5_LR[1])
            context_seconds, restoration_seconds, peak_mb, (height, width), lr_branch = child(code)
            results[canvas, count] = restoration_seconds
            if canvas == 'decoupled':  # the LR as it is
                lr_branch_seconds = lr_branch
            rows.append(f'{count} reference(s), {canvas:9} canvas (LR restored {width}x{height}): reference context '
                        f'{context_seconds:.2f} s, restoration {restoration_seconds:.2f} s, peak extra RSS '
                        f'{peak_mb:.0f} MB')
    rows.append(f'encoder LR branch at {CUFED5_LR[1]}x{CUFED5_LR[0]} (recomputed per extra reference of a set): '
                f'{lr_branch_seconds:.2f} s')
    figures = {
        f'{canvas}_restoration_{count}_refs_over_1': results[canvas, count] / results[canvas, 1]
        for canvas in ('decoupled', 'stitched')
        for count in REFERENCE_COUNTS[1:]
    }
    return rows, figures


RETRIEVAL_CANDIDATES = 200
RETRIEVAL_PHOTOS = ('astronaut', 'chelsea', 'coffee', 'rocket', 'hubble_deep_field', 'immunohistochemistry', 'retina')


def bench_retrieval():
    """Seconds to rank :data:`RETRIEVAL_CANDIDATES` CUFED5-size candidates for one LR (module docstring)."""
    import tempfile

    import cv2
    import numpy as np
    from skimage import data as skimage_data

    from frfsr_plugin.data.transforms import pil_bicubic_resize
    from frfsr_plugin.restoration.retrieval import DEFAULT_RERANK, ReferenceRetriever

    photos = [getattr(skimage_data, name)() for name in RETRIEVAL_PHOTOS]
    generator = np.random.default_rng(0)
    height, width = 4 * CUFED5_LR[0], 4 * CUFED5_LR[1]
    retriever = ReferenceRetriever(build_reference_networks(random_reference_network_options())[0])
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for number in range(RETRIEVAL_CANDIDATES):
            photo = photos[number % len(photos)]
            side = generator.uniform(0.5, 1.0)
            crop_h, crop_w = int(photo.shape[0] * side), int(photo.shape[1] * side)
            top = generator.integers(0, photo.shape[0] - crop_h + 1)
            left = generator.integers(0, photo.shape[1] - crop_w + 1)
            candidate = pil_bicubic_resize(np.ascontiguousarray(photo[top:top + crop_h, left:left + crop_w]),
                                           (height, width))
            paths.append(f'{folder}/{number:03d}.png')
            cv2.imwrite(paths[-1], candidate[..., ::-1])
        lr = pil_bicubic_resize(photos[2][:height, :width], CUFED5_LR)
        start = time.perf_counter()
        retriever.rank(lr, paths, DEFAULT_RERANK)
        return time.perf_counter() - start


def cufed5_inputs():
    """Random LR (1, 3, 83, 125), its bicubic x4 and a Ref (1, 3, 332, 500)."""
    height, width = CUFED5_LR
    lq, ref = torch.rand(1, 3, height, width), torch.rand(1, 3, 4 * height, 4 * width)
    return lq, F.interpolate(lq, scale_factor=4, mode='bicubic', align_corners=False), ref


def forward_seconds(modules, run, repeats):
    """Median seconds of each module's forward while ``run()`` executes, over ``repeats`` runs.

    Args:
        modules (dict[str, nn.Module]): Stage name -> the module to time (each called once per run).
        run (callable): Runs the whole computation.
        repeats (int): Number of runs.

    Returns:
        dict[str, float]: Stage name -> median seconds.
    """
    started, seconds = {}, {name: [] for name in modules}

    def start(name):
        started[name] = time.perf_counter()

    def stop(name):
        seconds[name].append(time.perf_counter() - started[name])

    handles = []
    for name, module in modules.items():
        handles.append(module.register_forward_pre_hook(lambda _, args, name=name: start(name)))
        handles.append(module.register_forward_hook(lambda _, args, output, name=name: stop(name)))
    try:
        for _ in range(repeats):
            run()
    finally:
        for handle in handles:
            handle.remove()
    return {name: statistics.median(values) for name, values in seconds.items()}


def bench_two_stage_inference(repeats, dcn_backend, speed):
    """Per-stage seconds of two-stage inference at CUFED5 size with full-size random-init networks, timed inside the
    reference pipeline's own path.

    Returns:
        tuple[dict[str, float], dict, nn.Module]: seconds per stage, the stage-1 context, and Net1.
    """
    torch.manual_seed(0)
    encoder, correspondence, sife = build_reference_networks(random_reference_network_options())
    net1 = ARCH_REGISTRY.get('FRFSRNet')(dcn_backend=dcn_backend).eval()
    net2 = speed_up_network(ARCH_REGISTRY.get('FRFSRStage2Net')(dcn_backend=dcn_backend).eval(), speed)
    pipeline = ReferencePipeline(encoder, correspondence, sife, speed_up_network(net1, speed),
                                 FeatureReuse('aggregate_up_large'), speed)
    lq, lq_up, ref = cufed5_inputs()
    stages = {
        'encoder': encoder,
        'correspondence (matching, flows, pre-offsets, VGG19)': correspondence,
        'SIFE': sife,
        'Net1': pipeline.stage1,
        'Net2': net2
    }
    with torch.no_grad():
        seconds = forward_seconds(stages, lambda: pipeline.super_resolve(net2, lq, lq_up, ref), repeats)
        context = pipeline.reference_context(lq, lq_up, ref)
    return seconds, context, pipeline.stage1


def bench_speed_options(net, context, repeats):
    """Net1 seconds at CUFED5 size with no speed option and with each one alone, and the max |SR difference|."""
    lq = cufed5_inputs()[0]
    rows = []
    with torch.no_grad():
        reference = net(lq, context)
        plain = median_seconds(lambda: net(lq, context), repeats)
        rows.append(f'Net1 speed options: none {plain:.2f} s')
        for option in ('channels_last', 'bf16'):
            speed = {key: key == option for key in SPEED_OPTIONS}
            fast_net = speed_up_network(net, speed)
            with autocast_context(lq.device, speed):
                seconds = median_seconds(lambda: fast_net(lq, context), repeats)
                diff = (fast_net(lq, context).float() - reference).abs().max().item()
            net.to(memory_format=torch.contiguous_format)
            rows.append(f'Net1 speed options: {option} {seconds:.2f} s ({plain / seconds:.2f}x), max |SR diff| '
                        f'{diff:.2e} (SR range [{reference.min():.2f}, {reference.max():.2f}])')
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description='FRFSR benchmark (CPU or CUDA-free; see module docstring).')
    parser.add_argument('--quick', action='store_true', help='fewer sizes and repeats (under 3 minutes on 2 cores)')
    parser.add_argument('--threads', type=int, default=torch.get_num_threads(), help='torch threads')
    parser.add_argument('--dcn-backend', default='torchvision', help='deformable conv backend of the networks')
    parser.add_argument('--speed', nargs='*', default=[], choices=SPEED_OPTIONS, help='speed options of Net1/Net2')
    parser.add_argument(
        '--references', action='store_true', help='only reference sets: decoupled vs stitched canvas, 1, 3, 5 refs')
    parser.add_argument('--retrieval', action='store_true', help='only retrieval: rank 200 CUFED5-size candidates')
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.retrieval:
        seconds = bench_retrieval()
        print(f'torch {torch.__version__}, {args.threads} threads: ranked {RETRIEVAL_CANDIDATES} candidates of '
              f'{4 * CUFED5_LR[1]}x{4 * CUFED5_LR[0]} for an LR of {CUFED5_LR[1]}x{CUFED5_LR[0]}')
        print(f'retrieval_seconds_{RETRIEVAL_CANDIDATES}_candidates: {seconds:.4g}')
        return 0
    if args.references:
        print(f'torch {torch.__version__}, {args.threads} threads, dcn_backend {args.dcn_backend}, LR '
              f'{CUFED5_LR[1]}x{CUFED5_LR[0]}, references {4 * CUFED5_LR[1]}x{4 * CUFED5_LR[0]}')
        rows, figures = bench_reference_sets(args.threads, args.dcn_backend, 1 if args.quick else 3)
        print('\n'.join(rows))
        for name, value in figures.items():
            print(f'{name}: {value:.4g}')
        return 0
    retained = retain_freed_cpu_memory()  # as frfsr infer and basicsr test; the training step's child keeps defaults
    speed = {key: key in args.speed for key in SPEED_OPTIONS}
    repeats, big_repeats = (3, 1) if args.quick else (5, 3)
    step_repeats = 1 if args.quick else 3
    sizes = [CUFED5_LR] if args.quick else [(40, 40), CUFED5_LR, (128, 128)]
    print(f'torch {torch.__version__}, {args.threads} threads, dcn_backend {args.dcn_backend}, '
          f'speed options {args.speed or "none"}, freed CPU memory retained (inference): {retained}')

    rows, figures = bench_matcher(sizes, repeats)
    print('\n'.join(rows))

    ours = child(DDF_MEMORY_CODE.format(unfold=False, threads=args.threads))
    unfold = child(DDF_MEMORY_CODE.format(unfold=True, threads=args.threads))
    print(f'DDF training step, batch 9, LR 40 (10 residual DDF blocks): peak extra RSS {ours:.0f} MB (ours) vs '
          f'{unfold:.0f} MB (unfold)')
    figures['ddf_train_peak_memory_ratio'] = ours / unfold

    stages, context, net1 = bench_two_stage_inference(big_repeats, args.dcn_backend, speed)
    for name, seconds in stages.items():
        print(f'two-stage inference LR {CUFED5_LR[1]}x{CUFED5_LR[0]}, Ref {4 * CUFED5_LR[1]}x{4 * CUFED5_LR[0]}: '
              f'{name} {seconds:.2f} s')
    figures['two_stage_infer_seconds_cufed5'] = sum(stages.values())
    if not args.quick and not any(speed.values()):
        print('\n'.join(bench_speed_options(net1, context, big_repeats)))

    step_seconds, step_mb = child(
        TRAIN_STEP_CODE.format(threads=args.threads, dcn_backend=args.dcn_backend, repeats=step_repeats, speed=speed))
    print(f'stage-1 training step, batch 2, LR 40: {step_seconds:.2f} s, peak extra RSS {step_mb:.0f} MB')
    figures.update(train_step_seconds_b2=step_seconds, train_step_peak_mb_b2=step_mb)
    print(f'peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB')
    for name, value in figures.items():
        print(f'{name}: {value:.4g}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
