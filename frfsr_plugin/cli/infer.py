"""``frfsr infer``: super-resolve LR images with references: one LR with one or several references (``--ref``,
``--ref-dir``), or a folder of LR images with references matched by name."""
import os
from os import path as osp

import numpy as np
from basicsr.utils import imwrite, tensor2img
from tqdm import tqdm

from frfsr_plugin.cli.explain import write_explanation
from frfsr_plugin.cli.rank import check_retrieval_options, list_reference_candidates, rank_candidates
from frfsr_plugin.data.transforms import IMG_EXTENSIONS, read_image_rgb
from frfsr_plugin.metrics.evaluation import PAPER_METRICS, evaluate_images
from frfsr_plugin.restoration.explanation import DEFAULT_THRESHOLD, check_threshold
from frfsr_plugin.restoration.inference import RefSRInferencer, stitch_references, to_batch
from frfsr_plugin.restoration.retrieval import DEFAULT_RERANK, ReferenceRetriever
from frfsr_plugin.utils.comparison import refsr_panels, write_comparison
from frfsr_plugin.utils.cpu_allocator import retain_freed_cpu_memory
from frfsr_plugin.utils.errors import MissingFileError, OptionError


def list_pairs(lr, refs, gt, output, candidates=()):
    """(lr, [refs], gt or None, output path) for a single LR or for an LR folder.

    Args:
        lr (str): LR image or folder.
        refs (list[str]): ``--ref`` values: images (a single LR), or one folder of references matched to the LR
            folder's images by file name.
        gt (str | None): Ground truth image or folder.
        output (str): SR image path, or output folder.
        candidates (Sequence[str]): References of ``--ref-dir``, added to every LR's references.

    Returns:
        list[tuple[str, list[str], str | None, str]]
    """
    if not refs and not candidates:
        raise OptionError('give the references with --ref (repeatable) or --ref-dir.')
    if not osp.isdir(lr):
        return [(lr, list(refs) + list(candidates), gt, output)]
    if refs and (len(refs) != 1 or not osp.isdir(refs[0])):
        raise OptionError('with an LR folder, --ref must be one folder holding references with the same file names '
                          '(--ref-dir references serve every LR image).')
    names = sorted(name for name in os.listdir(lr) if name.lower().endswith(IMG_EXTENSIONS))
    if not names:
        raise MissingFileError(f"no images in the LR folder '{lr}'.")
    pairs = []
    for name in names:
        own = [osp.join(refs[0], name)] if refs else []
        if own and not osp.isfile(own[0]):
            raise MissingFileError(f"LR image '{name}' has no reference '{own[0]}'.")
        gt_path = osp.join(gt, name) if gt else None
        out_path = osp.join(output, osp.splitext(name)[0] + '.png')
        pairs.append((osp.join(lr, name), own + list(candidates), gt_path, out_path))
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
        retain_freed_cpu_memory()  # 40% faster on CPU; under a budget the inferencer hands freed memory back instead
    threshold = DEFAULT_THRESHOLD if args.explain_threshold is None else args.explain_threshold
    check_threshold(threshold)
    check_retrieval_options(args.top_k, args.rerank, args.ref_dir)
    inferencer = RefSRInferencer(args.opt, args.weights, args.device, args.max_corr_elements, args.tile,
                                 args.tile_overlap, args.max_memory_mb, args.ref_canvas)
    candidates = list_reference_candidates(args.ref_dir) if args.ref_dir else ()
    pairs = list_pairs(args.lr, args.ref or [], args.gt, args.output, candidates)
    if args.top_k is not None:
        retriever = ReferenceRetriever(inferencer.pipeline.extractor, args.device, inferencer.max_corr_elements)
        rerank = max(args.top_k, args.rerank or DEFAULT_RERANK)
    results = []
    for lr_path, ref_paths, gt_path, out_path in tqdm(pairs, unit='image', disable=len(pairs) == 1):
        lr = read_image_rgb(lr_path)
        if args.top_k is not None:  # the --ref-dir candidates come last; the best top_k of them join --ref
            own = ref_paths[:len(ref_paths) - len(candidates)]
            ranking = rank_candidates(retriever, lr, osp.basename(lr_path), list(candidates), rerank, 'infer', rerank)
            ref_paths = own + ranking.paths[:args.top_k]
        refs = [read_image_rgb(path) for path in ref_paths]
        restoration, inputs = inferencer.super_resolve_with_inputs(lr, refs, ref_paths)
        sr = tensor2img(restoration.sr, rgb2bgr=False)
        os.makedirs(osp.dirname(osp.abspath(out_path)), exist_ok=True)
        imwrite(np.ascontiguousarray(sr[..., ::-1]), out_path)
        gt = read_image_rgb(gt_path) if gt_path else None
        if gt is not None:
            values = image_metrics(sr, gt, args.lpips_weights)
            results.append(values)
            print(f'{osp.basename(lr_path)}: ' + ', '.join(f'{k} {v:.4f}' for k, v in values.items()))
        if args.compare:
            lq, sr_batch, ref_batch = (to_batch(img, 'cpu') for img in (lr, sr, stitch_references(refs)))
            panels = refsr_panels(lq, sr_batch, ref_batch, None if gt is None else to_batch(gt, 'cpu'))
            write_comparison(panels, osp.splitext(out_path)[0] + '_compare.png')
        if args.explain:
            names = [osp.basename(path) for path in ref_paths]
            explain_path = osp.splitext(out_path)[0] + '_explain.png'
            print(write_explanation(osp.basename(lr_path), restoration, inputs, names, threshold, explain_path))
    if len(results) > 1:
        print('mean: ' + ', '.join(f'{k} {np.mean([r[k] for r in results]):.4f}' for k in results[0]))
    return results
