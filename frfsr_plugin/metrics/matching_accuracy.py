"""Matching accuracy of a texture encoder on image pairs with known correspondences (e.g. random homographies)."""
import torch
import torch.nn.functional as F
from basicsr.utils.registry import METRIC_REGISTRY
from torch.utils.data import DataLoader, Subset

from frfsr_plugin.data.contrastive_dataset import ContrastiveHomographyDataset
from frfsr_plugin.losses.contrastive_loss import feature_correspondences
from frfsr_plugin.utils.errors import OptionError

PAIRS_PER_BATCH = 16


def matching_accuracy(feat1, feat2, gt_map, tolerance=1, border=10):
    """Fraction of valid image-1 feature positions whose best match in image 2 is correct, per pair.

    The best match of an image-1 position is the arg-max of the cosine similarity over all image-2 feature
    positions; it is correct if its Chebyshev distance to the true position (``round(gt_map / stride)``) is at most
    ``tolerance`` feature pixels. Valid positions follow the loss geometry
    (:func:`~frfsr_plugin.losses.contrastive_loss.feature_correspondences`).

    Args:
        feat1 (Tensor): Image-1 features (encoder branch 1), (B, C, h, w).
        feat2 (Tensor): Image-2 features (encoder branch 2), (B, C, h2, w2).
        gt_map (Tensor): (B, 2, H, W), the (x, y) pixel position in image 2 of every image-1 pixel.
        tolerance (int): Largest accepted Chebyshev distance in feature pixels. Default: 1.
        border (float): Mapped pixels must lie strictly inside (border, size - border). Default: 10.

    Returns:
        Tensor: (B,) float accuracies in [0, 1]; NaN for a pair without valid positions.
    """
    accuracies = []
    for sample_feat1, sample_feat2, sample_map in zip(feat1, feat2, gt_map):
        valid, _, pos2 = feature_correspondences(sample_map, sample_feat1.shape[-2:], border)
        desc1 = F.normalize(sample_feat1.flatten(1)[:, valid], dim=0)
        all_desc2 = F.normalize(sample_feat2.flatten(1), dim=0)
        best = (desc1.t() @ all_desc2).argmax(dim=1)
        width2 = sample_feat2.shape[-1]
        matched = torch.stack([best // width2, best % width2], dim=1)
        correct = (matched - pos2).abs().amax(dim=1) <= tolerance
        accuracies.append(correct.float().mean())
    return torch.stack(accuracies)


@METRIC_REGISTRY.register()
def calculate_matching_accuracy(feat1, feat2, gt_map, tolerance=1, border=10, **kwargs):
    """:func:`matching_accuracy` as a BasicSR validation metric (higher is better), averaged over the batch.

    The texture-encoder models pass the features of each validation pair instead of images.

    Args:
        feat1 (Tensor): (B, C, h, w) image-1 features.
        feat2 (Tensor): (B, C, h2, w2) image-2 features.
        gt_map (Tensor): (B, 2, H, W) ground-truth map.
        tolerance (int): Default: 1.
        border (float): Default: 10.

    Returns:
        float: Mean accuracy over the pairs with valid positions.
    """
    return float(matching_accuracy(feat1, feat2, gt_map, tolerance, border).nanmean())


@torch.no_grad()
def held_out_matching_accuracy(encoder, folder, pairs=None, seed=0, size=160, lr_up=False, border=10):
    """Mean matching accuracy of ``encoder`` over the first ``pairs`` held-out homography pairs of ``folder``.

    The pairs are the validation pairs of :class:`ContrastiveHomographyDataset` (each image resized to ``size`` and
    warped by the homography of ``homography_seed`` = ``seed``), so equal seeds give identical pairs.

    Args:
        encoder (FRFSRContrastiveEncoder): The encoder, in eval mode.
        folder (str): Folder of images.
        pairs (int | None): Number of pairs (None: one per image). Default: None.
        seed (int): Homography seed of the pairs. Default: 0.
        size (int): Side of the square images. Default: 160.
        lr_up (bool): Branch 1 encodes the LR-up image (restoration use) instead of the HR one. Default: False.
        border (float): Border of valid positions, see :func:`matching_accuracy`. Default: 10.

    Returns:
        tuple[float, int]: Mean accuracy over the pairs and the number of pairs.
    """
    dataset = ContrastiveHomographyDataset({
        'dataroot_in': folder,
        'phase': 'val',
        'gt_size': size,
        'homography_seed': seed
    })
    count = len(dataset) if pairs is None else min(pairs, len(dataset))
    if count < 1:
        raise OptionError(f'--pairs must be at least 1, got {pairs}.')
    accuracies = []
    for batch in DataLoader(Subset(dataset, range(count)), batch_size=PAIRS_PER_BATCH):
        feat1, feat2 = encoder(batch['img1_lr_up' if lr_up else 'img1'], batch['img2'])
        accuracies.append(matching_accuracy(feat1, feat2, batch['gt_map'], border=border))
    return float(torch.cat(accuracies).nanmean()), count
