"""Retrieval of references for an LR image among candidate photos (``frfsr rank``, ``frfsr infer --top-k``).

Two steps, as image search engines do it:

1. **Shortlist** by a cheap global descriptor (:func:`texture_descriptor`): the texture encoder's features of every
   candidate, downscaled by :data:`DESCRIPTOR_SCALE` (a quarter of the pixels, 7x less encoder time), summarised by
   the log standard deviation of each channel over positions; the LR-up image gets the same downscale and the LR
   branch, so that LR and candidates keep their relative scale. Candidates are ordered by the cosine similarity of
   their descriptor to the LR's.
2. **Re-rank** the best ``rerank`` of them by the dense match score (:func:`dense_match_score`): the mean over the LR's
   3x3 patches of the best cosine similarity to any patch of the candidate, the similarity the correspondence
   maximises, with the encoder at full resolution as the restoration uses it.

The ranking lists the re-ranked candidates first (by match score), then the others (by descriptor score).
"""
from typing import NamedTuple, Optional

import torch

from frfsr_plugin.data.transforms import SUPPORTED_SCALE, mod_crop, pil_bicubic_resize, read_image_rgb
from frfsr_plugin.ops.patch_match import DEFAULT_MAX_CORR_ELEMENTS, match_patches
from frfsr_plugin.restoration.inference import MIN_REF_SIZE, RefSRInferencer, to_batch
from frfsr_plugin.utils.errors import OptionError, UserInputError
from frfsr_plugin.utils.frozen_networks import build_frozen_network
from frfsr_plugin.utils.options import load_plugins

DESCRIPTOR_SCALE = 0.5  # side factor of the images the global descriptor sees
DEFAULT_RERANK = 10  # candidates re-ranked by the dense match score


class RankedCandidate(NamedTuple):
    """One candidate of a ranking.

    Attributes:
        path (str): The candidate's file.
        descriptor_score (float): Cosine similarity of its global descriptor to the LR's, in [-1, 1].
        match_score (float | None): Its dense match score, in [-1, 1]; None outside the re-ranked shortlist.
    """

    path: str
    descriptor_score: float
    match_score: Optional[float] = None


class Ranking(NamedTuple):
    """A ranking of candidates, best first.

    Attributes:
        candidates (list[RankedCandidate]): The readable candidates large enough to be references, best first.
        skipped (list[tuple[str, str]]): (path, reason) of the others, in the order given.
    """

    candidates: list
    skipped: list

    @property
    def paths(self):
        """The ranked candidates' files, best first."""
        return [candidate.path for candidate in self.candidates]


def texture_descriptor(features):
    """The global descriptor of encoder features: the logarithm of each channel's standard deviation over positions
    (how strongly each texture filter responds across the image), as one unit vector.

    Among the summaries we compared on scikit-image's photos (mean, standard deviation, both, of raw or unit-normalised
    features), this one put a displaced crop of the LR's own photo highest among 18 other photos (docs/design.md).

    Args:
        features (Tensor): (B, C, h, w).

    Returns:
        Tensor: (B, C), unit L2 norm.
    """
    energy = features.flatten(2).std(2, unbiased=False).clamp_min(1e-6).log()
    return torch.nn.functional.normalize(energy, dim=1)


def dense_match_score(feat_lq, feat_ref, max_corr_elements=DEFAULT_MAX_CORR_ELEMENTS):
    """The mean over LR patches of the best cosine similarity of 3x3 feature patches (``ops/patch_match.py``).

    Args:
        feat_lq (Tensor): LR-side encoder features, (B, C, h, w), h and w >= 3.
        feat_ref (Tensor): Reference-side encoder features, (B, C, h_r, w_r), h_r and w_r >= 3.
        max_corr_elements (int): The matcher's chunk budget. Default: 2**29.

    Returns:
        Tensor: (B,), in [-1, 1].
    """
    return match_patches(feat_lq, feat_ref, max_corr_elements)[1].flatten(1).mean(1)


def downscaled(image, scale):
    """PIL-bicubic resize of an (H, W, 3) uint8 image by ``scale``, each side at least 4 pixels (one feature)."""
    height, width = image.shape[:2]
    return pil_bicubic_resize(image, (max(4, round(height * scale)), max(4, round(width * scale))))


class ReferenceRetriever:
    """Ranks candidate reference files for an LR image with the texture encoder (module docstring).

    Args:
        extractor (nn.Module): The contrastive texture encoder, with ``encode_lr`` and ``encode_reference``
            (:class:`~frfsr_plugin.archs.contrastive_encoder_arch.FRFSRContrastiveEncoder`).
        device (str | torch.device): Where the encoder runs. Default: ``'cpu'``.
        max_corr_elements (int): The matcher's chunk budget. Default: 2**29.
        descriptor_scale (float): Side factor of the descriptor's images, in (0, 1]. Default: 0.5.
    """

    def __init__(self,
                 extractor,
                 device='cpu',
                 max_corr_elements=DEFAULT_MAX_CORR_ELEMENTS,
                 descriptor_scale=DESCRIPTOR_SCALE):
        if not all(hasattr(extractor, name) for name in ('encode_lr', 'encode_reference')):
            raise OptionError(f'network_extractor: retrieval needs an encoder with encode_lr and encode_reference '
                              f'(FRFSRContrastiveEncoder); {type(extractor).__name__} has not.')
        if not 0 < descriptor_scale <= 1:
            raise OptionError(f'descriptor_scale must lie in (0, 1], got {descriptor_scale}.')
        self.extractor = extractor
        self.device = torch.device(device)
        self.max_corr_elements = int(max_corr_elements)
        self.descriptor_scale = descriptor_scale

    @classmethod
    def from_options(cls, opt_path, device='cpu'):
        """The retriever of an options YAML's ``network_extractor`` (weights as the YAML names them).

        Args:
            opt_path (str): Training or test options YAML.
            device (str): ``'cpu'`` or ``'cuda'``. Default: ``'cpu'``.

        Returns:
            ReferenceRetriever: With the matching chunk of ``network_map`` when the YAML sets one.
        """
        opt = load_plugins(opt_path)
        extractor = build_frozen_network(opt, 'network_extractor', device, 'frfsr rank')
        max_corr_elements = (opt.get('network_map') or {}).get('max_corr_elements', DEFAULT_MAX_CORR_ELEMENTS)
        return cls(extractor, device, max_corr_elements)

    def encode(self, image, branch):
        """Encoder features of an (H, W, 3) uint8 image with ``encode_lr`` or ``encode_reference``: (1, C, H/4, W/4)."""
        return getattr(self.extractor, branch)(to_batch(mod_crop(image, SUPPORTED_SCALE), self.device))

    @torch.no_grad()
    def rank(self, lr, candidate_paths, rerank=DEFAULT_RERANK):
        """Rank candidate references for one LR image.

        Args:
            lr (ndarray): LR image, (h, w, 3) RGB uint8, h and w >= 15.
            candidate_paths (Sequence[str]): Candidate image files.
            rerank (int): How many of the best by descriptor are re-ranked by dense match score (>= 1). Default: 10.

        Returns:
            Ranking: Unreadable and too small candidates are skipped with their reason.
        """
        if rerank < 1:
            raise OptionError(f'--rerank must be at least 1, got {rerank}.')
        lr_up = pil_bicubic_resize(lr, RefSRInferencer.check_lr(lr))
        lr_descriptor = texture_descriptor(self.encode(downscaled(lr_up, self.descriptor_scale), 'encode_lr'))
        scored, skipped = [], []
        for path in candidate_paths:
            try:
                image = read_image_rgb(path)
            except UserInputError as error:
                skipped.append((path, str(error)))
                continue
            if min(image.shape[:2]) < MIN_REF_SIZE:
                skipped.append(
                    (path, f'{image.shape[1]}x{image.shape[0]} is smaller than {MIN_REF_SIZE}x{MIN_REF_SIZE}'))
                continue
            descriptor = texture_descriptor(self.encode(downscaled(image, self.descriptor_scale), 'encode_reference'))
            scored.append(RankedCandidate(path, float((descriptor * lr_descriptor).sum())))
        scored.sort(key=lambda candidate: -candidate.descriptor_score)
        feat_lq = self.encode(lr_up, 'encode_lr')
        shortlist = [
            candidate._replace(
                match_score=float(
                    dense_match_score(feat_lq, self.encode(read_image_rgb(candidate.path), 'encode_reference'),
                                      self.max_corr_elements))) for candidate in scored[:rerank]
        ]
        shortlist.sort(key=lambda candidate: -candidate.match_score)
        return Ranking(shortlist + scored[rerank:], skipped)
