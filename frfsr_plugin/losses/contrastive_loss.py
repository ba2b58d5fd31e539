"""Losses of the contrastive texture encoder training (C2-Matching's teacher and student stages, spec 2.2).

Both losses work on the features of an image pair related by a known map (``gt_map`` of
:class:`~frfsr_plugin.data.contrastive_dataset.ContrastiveHomographyDataset`). Image-1 feature position p (pixel
``stride * p``) corresponds to image-2 feature position ``round(gt_map[:, stride * p] / stride)``; only positions
whose mapped pixel lies strictly inside the image-2 border are used, and a pair with fewer than
``min_correspondences`` of them is skipped. Descriptors are the per-position L2-normalised features.
"""
import torch
import torch.nn.functional as F
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn

# Larger than any descriptor distance (2 - 2 cos <= 4): added to pairs that may not serve as negatives.
EXCLUDED_DISTANCE = 10.


def feature_grid(height, width, device):
    """(y, x) of every position of a height x width grid in row-major order, shape (height * width, 2), long."""
    grid_y, grid_x = torch.meshgrid(
        torch.arange(height, device=device), torch.arange(width, device=device), indexing='ij')
    return torch.stack([grid_y.flatten(), grid_x.flatten()], dim=1)


def chebyshev_distance(pos_a, pos_b):
    """Pairwise Chebyshev distances between (n, 2) and (m, 2) integer positions, shape (n, m)."""
    return (pos_a[:, None, :] - pos_b[None, :, :]).abs().amax(dim=-1)


def feature_correspondences(gt_map, feat_size, border=10):
    """Ground-truth feature correspondences of one image pair (spec 2.2).

    Args:
        gt_map (Tensor): (2, H, W), the (x, y) pixel position in image 2 of every image-1 pixel; both images have
            size (H, W).
        feat_size (tuple[int, int]): (h, w) of the feature maps; their stride is H // h.
        border (float): A mapped pixel must lie strictly inside (border, size - border) on both axes. Default: 10.

    Returns:
        tuple[Tensor, Tensor, Tensor]: ``valid`` (n,), the row-major indices of the valid image-1 feature positions;
        ``pos1`` (n, 2) and ``pos2`` (n, 2), their (y, x) feature positions in image 1 and in image 2 (long).
    """
    height, width = gt_map.shape[-2:]
    stride = height // feat_size[0]
    mapped_x, mapped_y = gt_map[:, ::stride, ::stride][:, :feat_size[0], :feat_size[1]].flatten(1)
    inside = (mapped_x > border) & (mapped_x < width - border) & (mapped_y > border) & (mapped_y < height - border)
    valid = inside.nonzero().squeeze(1)
    pos1 = feature_grid(*feat_size, gt_map.device)[valid]
    pos2 = torch.round(torch.stack([mapped_y[valid], mapped_x[valid]], dim=1) / stride).long()
    pos2 = torch.minimum(pos2, torch.tensor(feat_size, device=pos2.device) - 1)  # only a border < stride / 2 reaches
    return valid, pos1, pos2


def correspondence_descriptors(feat1, feat2, valid, pos2):
    """Normalised descriptors of one pair at its correspondences.

    Args:
        feat1 (Tensor): Image-1 features, (C, h, w).
        feat2 (Tensor): Image-2 features, (C, h, w).
        valid (Tensor): (n,) row-major indices of the valid image-1 positions.
        pos2 (Tensor): (n, 2) (y, x) image-2 positions corresponding to them.

    Returns:
        tuple[Tensor, Tensor, Tensor]: All image-1 descriptors (C, h * w), those at the valid positions (C, n) and
        the image-2 descriptors at their correspondences (C, n).
    """
    all_desc1 = F.normalize(feat1.flatten(1), dim=0)
    desc2 = F.normalize(feat2[:, pos2[:, 0], pos2[:, 1]], dim=0)
    return all_desc1, all_desc1[:, valid], desc2


class CorrespondenceLoss(nn.Module):
    """Base of the contrastive losses: finds each pair's correspondences and averages a per-pair term.

    Args:
        loss_weight (float): Multiplier of the loss.
        border (float): Border of valid mapped pixels, see :func:`feature_correspondences`. Default: 10.
        min_correspondences (int): Pairs with fewer valid positions are skipped. Default: 128.
    """

    def __init__(self, loss_weight, border=10, min_correspondences=128):
        super().__init__()
        self.loss_weight = loss_weight
        self.border = border
        self.min_correspondences = min_correspondences

    def average_over_pairs(self, pair_term, gt_map, *feats):
        """``loss_weight`` x mean of ``pair_term`` over the pairs with enough correspondences.

        Args:
            pair_term (callable): ``pair_term(valid, pos1, pos2, *feats_of_pair)`` -> scalar Tensor.
            gt_map (Tensor): (B, 2, H, W) ground-truth maps.
            *feats (Tensor): (B, C, h, w) feature maps, indexed per pair.

        Returns:
            Tensor: Scalar loss; zero (still connected to ``feats``, so that DDP sees every gradient) when no pair
            has enough correspondences.
        """
        terms = []
        for index in range(gt_map.shape[0]):
            valid, pos1, pos2 = feature_correspondences(gt_map[index], feats[0].shape[-2:], self.border)
            if valid.numel() >= self.min_correspondences:
                terms.append(pair_term(valid, pos1, pos2, *(feat[index] for feat in feats)))
        if not terms:
            return sum(feat.sum() for feat in feats) * 0.
        return self.loss_weight * torch.stack(terms).mean()


@LOSS_REGISTRY.register()
class TextureTripletLoss(CorrespondenceLoss):
    """Triplet margin loss with the hardest negatives in both images (C2-Matching's contrastive loss, spec 2.2).

    With distances ``d(u, v) = 2 - 2 <u, v>``, for each valid image-1 position i with descriptor a_i and
    corresponding image-2 descriptor b_i: ``d+ = d(a_i, b_i)``; ``d2-`` = min over the other correspondences j
    whose image-2 positions are farther than ``safe_radius`` (Chebyshev, feature pixels) from i's of
    ``d(a_i, b_j)``; ``d1-`` = min over all image-1 positions q farther than ``safe_radius`` from i of
    ``d(b_i, a_q)``. Pair loss: ``mean_i ReLU(margin + d+ - min(d1-, d2-))``; averaged over the valid pairs.

    Args:
        loss_weight (float): Default: 1.
        margin (float): Default: 1.
        safe_radius (int): Default: 4.
        border (float): Default: 10.
        min_correspondences (int): Default: 128.
    """

    def __init__(self, loss_weight=1.0, margin=1.0, safe_radius=4, border=10, min_correspondences=128):
        super().__init__(loss_weight, border, min_correspondences)
        self.margin = margin
        self.safe_radius = safe_radius

    def forward(self, feat1, feat2, gt_map):
        """
        Args:
            feat1 (Tensor): Image-1 features (encoder branch 1), (B, C, h, w).
            feat2 (Tensor): Image-2 features (encoder branch 2), (B, C, h, w).
            gt_map (Tensor): (B, 2, H, W) (x, y) image-2 position of every image-1 pixel.

        Returns:
            Tensor: Scalar loss.
        """
        return self.average_over_pairs(self.pair_loss, gt_map, feat1, feat2)

    def pair_loss(self, valid, pos1, pos2, feat1, feat2):
        """Triplet loss of one pair: correspondences as in :func:`feature_correspondences`, features (C, h, w)."""
        all_desc1, desc1, desc2 = correspondence_descriptors(feat1, feat2, valid, pos2)
        positive = 2 - 2 * (desc1 * desc2).sum(dim=0)
        near2 = chebyshev_distance(pos2, pos2) <= self.safe_radius
        negative2 = (2 - 2 * desc1.t() @ desc2 + EXCLUDED_DISTANCE * near2).amin(dim=1)
        near1 = chebyshev_distance(pos1, feature_grid(*feat1.shape[-2:], feat1.device)) <= self.safe_radius
        negative1 = (2 - 2 * desc2.t() @ all_desc1 + EXCLUDED_DISTANCE * near1).amin(dim=1)
        return F.relu(self.margin + positive - torch.minimum(negative1, negative2)).mean()


@LOSS_REGISTRY.register()
class TextureDistillationLoss(CorrespondenceLoss):
    """KL divergence between the teacher's and the student's correspondence distributions (spec 2.2).

    For the n valid correspondences of a pair, ``S = A^T B / temperature`` (n x n, cosine similarities between the
    image-1 descriptors at the valid positions and the image-2 descriptors at their correspondences) is computed for
    the student and the teacher; the pair loss is ``KL(softmax(S_teacher) || softmax(S_student))`` over rows, summed
    and divided by n (``batchmean``); averaged over the valid pairs and multiplied by ``loss_weight``.

    Args:
        loss_weight (float): Default: 15.
        temperature (float): Default: 0.15.
        border (float): Default: 10.
        min_correspondences (int): Default: 128.
    """

    def __init__(self, loss_weight=15.0, temperature=0.15, border=10, min_correspondences=128):
        super().__init__(loss_weight, border, min_correspondences)
        self.temperature = temperature

    def forward(self, student_feat1, student_feat2, teacher_feat1, teacher_feat2, gt_map):
        """
        Args:
            student_feat1 (Tensor): Student's image-1 features, (B, C, h, w).
            student_feat2 (Tensor): Student's image-2 features, (B, C, h, w).
            teacher_feat1 (Tensor): Teacher's image-1 features, (B, C', h, w) (no gradient flows into them).
            teacher_feat2 (Tensor): Teacher's image-2 features, (B, C', h, w).
            gt_map (Tensor): (B, 2, H, W) (x, y) image-2 position of every image-1 pixel.

        Returns:
            Tensor: Scalar loss.
        """
        return self.average_over_pairs(self.pair_loss, gt_map, student_feat1, student_feat2, teacher_feat1.detach(),
                                       teacher_feat2.detach())

    def pair_loss(self, valid, pos1, pos2, student_feat1, student_feat2, teacher_feat1, teacher_feat2):
        """KL term of one pair: correspondences as in :func:`feature_correspondences`, features (C, h, w)."""
        _, student1, student2 = correspondence_descriptors(student_feat1, student_feat2, valid, pos2)
        _, teacher1, teacher2 = correspondence_descriptors(teacher_feat1, teacher_feat2, valid, pos2)
        student_log_probs = F.log_softmax(student1.t() @ student2 / self.temperature, dim=1)
        teacher_probs = F.softmax(teacher1.t() @ teacher2 / self.temperature, dim=1)
        return F.kl_div(student_log_probs, teacher_probs, reduction='batchmean')
