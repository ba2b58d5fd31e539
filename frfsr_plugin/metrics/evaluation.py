"""The one evaluation of SR images: validation, ``frfsr infer``, the demo and ``tools/evaluate_robustness.py``.

:data:`PAPER_METRICS` are the options of the papers' metrics (PSNR and SSIM on the Y channel with a 4-pixel border,
as C2-Matching and FRFSR report), which the shipped YAMLs also give under ``val.metrics``; :func:`evaluate_images`
computes such a ``val.metrics`` mapping with BasicSR's ``calculate_metric``, as BasicSR's validation does.
"""
from basicsr.metrics import calculate_metric

CROP_BORDER = 4  # pixels left out on every side
PAPER_METRICS = {
    'psnr': {
        'type': 'calculate_psnr',
        'crop_border': CROP_BORDER,
        'test_y_channel': True
    },
    'ssim': {
        'type': 'calculate_ssim',
        'crop_border': CROP_BORDER,
        'test_y_channel': True
    },
}


def evaluate_images(sr, gt, metrics=PAPER_METRICS):
    """The metrics of an SR image against its ground truth.

    Args:
        sr (ndarray): SR image, (H, W, 3) uint8 BGR (BasicSR's convention, as ``tensor2img`` returns it).
        gt (ndarray): Ground truth of the same shape.
        metrics (dict[str, dict]): Name -> BasicSR metric options (``type`` plus its arguments), as in
            ``val.metrics``. Default: :data:`PAPER_METRICS`.

    Returns:
        dict[str, float]: Name -> value, in the order of ``metrics``.
    """
    return {name: calculate_metric({'img': sr, 'img2': gt}, metric_opt) for name, metric_opt in metrics.items()}
