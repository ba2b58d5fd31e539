"""``frfsr infer``: super-resolve LR images with references, one pair or two folders of pairs."""
import os
from os import path as osp

import numpy as np
from basicsr.utils import imwrite
from tqdm import tqdm

from frfsr_plugin.data.transforms import IMG_EXTENSIONS, read_image_rgb
from frfsr_plugin.metrics.evaluation import PAPER_METRICS, evaluate_images
from frfsr_plugin.restoration.inference import RefSRInferencer, stitch_references, to_batch
from frfsr_plugin.utils.comparison import refsr_panels, write_comparison
from frfsr_plugin.utils.cpu_allocator import retain_freed_cpu_memory
from frfsr_plugin.utils.errors import MissingFileError, OptionError


def list_pairs(lr, refs, gt, output):
    """(lr, [refs], gt or None, output path) for a single pair or for folders matched by file name."""
    if not osp.isdir(lr):
        return [(lr, refs, gt, output)]
    if len(refs) != 1 or not osp.isdir(refs[0]):
        raise OptionError('with an LR folder, --ref must be one folder holding references with the same file names.')
    names = sorted(name for name in os.listdir(lr) if name.lower().endswith(IMG_EXTENSIONS))
    if not names:
        raise MissingFileError(f"no images in the LR folder '{lr}'.")
    pairs = []
    for name in names:
        ref = osp.join(refs[0], name)
        if not osp.isfile(ref):
            raise MissingFileError(f"LR image '{name}' has no reference '{ref}'.")
        pairs.append(
            (osp.join(lr,
                      name), [ref], osp.join(gt, name) if gt else None, osp.join(output,
                                                                                 osp.splitext(name)[0] + '.png')))
    return pairs


def image_metrics(sr, gt, lpips_weights):
    """Y-PSNR / SSIM (crop 4) and, with backbone weights, LPIPS of RGB uint8 images of equal size."""
    if gt.shape != sr.shape:
        raise OptionError(f'--gt must be 4x the LR size {sr.shape[1]}x{sr.shape[0]}, got {gt.shape[1]}x{gt.shape[0]}.')
    metrics = dict(PAPER_METRICS)
    if lpips_weights:
        metrics['lpips'] = {'type': 'calculate_lpips', 'backbone_weights': lpips_weights}
    return evaluate_images(sr[..., ::-1], gt[..., ::-1], metrics)


def run_infer(args):
    """Run ``frfsr infer`` with parsed arguments; returns the list of per-image metric dicts (empty without --gt)."""
    if args.max_memory_mb is None:
        retain_freed_cpu_memory()  # 40% faster on CPU; a budget keeps the C library's defaults (utils/cpu_allocator.py)
    inferencer = RefSRInferencer(args.opt, args.weights, args.device, args.max_corr_elements, args.tile,
                                 args.tile_overlap, args.max_memory_mb)
    pairs = list_pairs(args.lr, args.ref, args.gt, args.output)
    results = []
    for lr_path, ref_paths, gt_path, out_path in tqdm(pairs, unit='image', disable=len(pairs) == 1):
        lr, ref = read_image_rgb(lr_path), stitch_references([read_image_rgb(path) for path in ref_paths])
        sr = inferencer(lr, ref, ref_name=', '.join(ref_paths))
        os.makedirs(osp.dirname(osp.abspath(out_path)), exist_ok=True)
        imwrite(np.ascontiguousarray(sr[..., ::-1]), out_path)
        gt = read_image_rgb(gt_path) if gt_path else None
        if gt is not None:
            values = image_metrics(sr, gt, args.lpips_weights)
            results.append(values)
            print(f'{osp.basename(lr_path)}: ' + ', '.join(f'{k} {v:.4f}' for k, v in values.items()))
        if args.compare:
            lq, sr_batch, ref_batch = (to_batch(img, 'cpu') for img in (lr, sr, ref))
            panels = refsr_panels(lq, sr_batch, ref_batch, None if gt is None else to_batch(gt, 'cpu'))
            write_comparison(panels, osp.splitext(out_path)[0] + '_compare.png')
    if len(results) > 1:
        print('mean: ' + ', '.join(f'{k} {np.mean([r[k] for r in results]):.4f}' for k in results[0]))
    return results
