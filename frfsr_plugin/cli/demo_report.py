"""The demo's report: one table of reference conditions by model, and the picture of what the reference changes.

``basicsr test`` writes each model's SR images per condition under ``<results>/visualization/<dataset>/``; the table
scores them with the one evaluation of the project (``metrics/evaluation.py``) against the CUFED5-like GTs.
"""
from os import path as osp

import numpy as np
import torch
from basicsr.data import build_dataset
from basicsr.utils import img2tensor, tensor2img

from frfsr_plugin.data.reference_conditions import reference_condition_options
from frfsr_plugin.data.transforms import read_image_rgb
from frfsr_plugin.metrics.evaluation import evaluate_images
from frfsr_plugin.utils.comparison import write_comparison

# condition -> row label, in table order (data/reference_conditions.py has the full list of conditions)
REPORT_CONDITIONS = {
    'level1': 'level-1 reference (relevant)',
    'level3': 'level-3 reference',
    'level5': 'level-5 reference (unrelated texture)',
    'lr': 'the LR itself as reference',
    'irrelevant': 'irrelevant: level-1 reference of another image',
}
SR_SUFFIX = 'SR'


def condition_dataset_name(test_set_name, condition):
    """Name of the test dataset of ``condition``, which names its results folder."""
    return f'{test_set_name}_{condition}'


def sr_image_path(results_dir, test_set_name, condition, image_name):
    """Where ``basicsr test`` wrote the SR of ``image_name`` (e.g. ``000_0``) under ``condition``."""
    folder = osp.join(results_dir, 'visualization', condition_dataset_name(test_set_name, condition))
    return osp.join(folder, f'{image_name}_{SR_SUFFIX}.png')


def bicubic_samples(test_root):
    """(name, bicubic x4 of the LR cropped to the GT, GT) per test image, RGB tensors (3, H, W) in [0, 1]."""
    dataset = build_dataset(reference_condition_options('lr', test_root))  # its lq_up is the bicubic LR of the GT
    for sample in dataset:
        height, width = sample['gt'].shape[-2:]
        yield osp.splitext(osp.basename(sample['gt_path']))[0], sample['lq_up'][:, :height, :width], sample['gt']


def metrics_table(test_root, results, test_set_name):
    """Mean Y-PSNR / SSIM of every model under every condition of :data:`REPORT_CONDITIONS`, and of bicubic.

    Args:
        test_root (str): The CUFED5-like test folder.
        results (dict[str, str]): Model label -> results folder of its ``basicsr test`` run.
        test_set_name (str): Prefix of the condition datasets' names.

    Returns:
        str: Markdown table, one row per condition plus a bicubic row, one column per model.
    """
    scores = {condition: {label: [] for label in results} for condition in REPORT_CONDITIONS}
    bicubic = []
    for name, bicubic_sr, gt in bicubic_samples(test_root):
        gt_bgr = tensor2img(gt)
        bicubic.append(list(evaluate_images(tensor2img(bicubic_sr), gt_bgr).values()))
        for condition, by_model in scores.items():
            for label, results_dir in results.items():
                sr = read_image_rgb(sr_image_path(results_dir, test_set_name, condition, name))[..., ::-1]
                by_model[label].append(list(evaluate_images(np.ascontiguousarray(sr), gt_bgr).values()))

    def cell(values):
        psnr, ssim = np.mean(values, axis=0)
        return f'{psnr:.2f} / {ssim:.4f}'

    rows = ['| reference | ' + ' | '.join(results) + ' |', '|---' * (len(results) + 1) + '|']
    rows += [
        f'| {REPORT_CONDITIONS[condition]} | ' + ' | '.join(cell(values) for values in by_model.values()) + ' |'
        for condition, by_model in scores.items()
    ]
    rows.append('| none: bicubic up-sampling | ' + ' | '.join([cell(bicubic)] + ['-'] * (len(results) - 1)) + ' |')
    return '\n'.join(rows) + '\n'


def write_reference_effect(test_root, results_dir, test_set_name, path):
    """One test image super-resolved with its level-1 reference and with an irrelevant one, side by side.

    Panels: bicubic | SR with the level-1 reference | that reference | SR with the irrelevant reference (the level-1
    reference of the next image) | that reference | GT, for the first image of the set; the labels of bicubic and
    the SRs give their Y-PSNR.

    Args:
        test_root (str): The CUFED5-like test folder.
        results_dir (str): Results folder of the model's ``basicsr test`` run.
        test_set_name (str): Prefix of the condition datasets' names.
        path (str): PNG to write.

    Returns:
        str: ``path``.
    """
    name, bicubic_sr, gt = next(bicubic_samples(test_root))
    level1 = build_dataset(reference_condition_options('level1', test_root))
    irrelevant = build_dataset(reference_condition_options('irrelevant', test_root))

    def image(file):
        return torch.as_tensor(img2tensor(read_image_rgb(file).astype(np.float32) / 255., bgr2rgb=False))

    def scored(label, sr):
        return f"{label}: {evaluate_images(tensor2img(sr), tensor2img(gt))['psnr']:.2f} dB", sr

    def sr(condition):
        return image(sr_image_path(results_dir, test_set_name, condition, name))

    panels = [
        scored('bicubic', bicubic_sr),
        scored('SR, level-1 reference', sr('level1')), ('level-1 reference', image(level1.pairs[0][1])),
        scored('SR, irrelevant reference', sr('irrelevant')), ('irrelevant reference', image(irrelevant.pairs[0][1])),
        ('GT', gt)
    ]
    write_comparison(panels, path)
    return path
