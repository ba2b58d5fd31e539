"""Image pairs related by a random homography, for training the contrastive texture encoder (C2-Matching)."""
from os import path as osp

import cv2
import numpy as np
import torch
from basicsr.utils import img2tensor
from basicsr.utils.registry import DATASET_REGISTRY
from torch.utils import data

from frfsr_plugin.data.realworld_degradation import (BLOCK_KEY, check_degradable_size, draw_degradation_kernels,
                                                     parse_realworld_options)
from frfsr_plugin.data.transforms import (check_scale, dihedral_augment, list_image_names, make_lr_pair,
                                          pil_bicubic_resize, read_image_rgb, require_option)
from frfsr_plugin.utils.errors import OptionError

# The homography moves the corners of a size x size square whose top-left corner lies in [CORNER_START, size) on
# each axis (C2-Matching's construction); each corner coordinate moves by an integer in [-max_corner_shift,
# max_corner_shift].
CORNER_START = 32


def random_homography(size, max_corner_shift, rng):
    """A random homography in C2-Matching's style, as the map from image-1 to image-2 pixel coordinates.

    The square with corners ``c`` (side ``size``, top-left corner uniform in [32, size) per axis) is mapped to the
    corners ``c + d`` with ``d`` integers in [-max_corner_shift, max_corner_shift]; the returned matrix is the inverse
    of that map (image 2 is image 1 warped by it, spec 2.2).

    Args:
        size (int): Image side in pixels.
        max_corner_shift (int): Largest corner displacement in pixels.
        rng (numpy.random.Generator): Random source.

    Returns:
        ndarray: (3, 3) float64 matrix taking homogeneous (x, y, 1) of image 1 to those of the same point in image 2.
    """
    left, top = rng.integers(CORNER_START, max(size, CORNER_START + 1), size=2)
    square = np.array([[left, top], [left + size, top], [left + size, top + size], [left, top + size]], np.float32)
    shifts = rng.integers(0, max_corner_shift + 1, size=(4, 2)) * rng.choice([-1, 1], size=(4, 2))
    square_to_perturbed = cv2.getPerspectiveTransform(square, (square + shifts).astype(np.float32))
    return np.linalg.inv(square_to_perturbed)


def warp_with_homography(img, homography):
    """Warp an image so that image-1 pixel p lands at ``homography @ p`` in the result, and return that GT map.

    Args:
        img (ndarray): (H, W, 3) uint8 image 1.
        homography (ndarray): (3, 3) map from image-1 to image-2 homogeneous pixel coordinates.

    Returns:
        tuple[ndarray, ndarray]: Image 2, (H, W, 3) uint8 (bilinear, zeros outside image 1); the GT map,
        (2, H, W) float32, holding the (x, y) image-2 position of every image-1 pixel.
    """
    height, width = img.shape[:2]
    warped = cv2.warpPerspective(
        img, homography, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    grid_y, grid_x = np.mgrid[:height, :width].astype(np.float64)
    mapped = np.einsum('ij,jhw->ihw', homography, np.stack([grid_x, grid_y, np.ones_like(grid_x)]))
    return warped, (mapped[:2] / mapped[2:]).astype(np.float32)


@DATASET_REGISTRY.register()
class ContrastiveHomographyDataset(data.Dataset):
    """Pairs (image, warped image) with dense ground-truth correspondences, from a folder of images (spec 2.2).

    Per sample: the image is PIL-bicubic resized to gt_size x gt_size; in training it gets random flips/transpose;
    a random homography (:func:`random_homography`) warps it into image 2; image 1 is also PIL-bicubic x1/4 down and
    x4 up ("LR-up"), the encoder input of the student. In training the randomness comes from numpy's global state,
    which BasicSR seeds per worker; otherwise (validation, ``phase != 'train'``) there is no augmentation and the
    homography of pair ``i`` comes from ``numpy.random.default_rng([homography_seed, i])``, so held-out pairs are
    the same in every run. With ``realworld_degradation`` (training only) the LR-up image is not made here: the
    sample carries Real-ESRGAN's three kernels instead (drawn last, so from the same random state the images equal
    the bicubic sample's) and the student model makes LR-up from image 1 degraded on its device, to distil an
    encoder for degraded LR.

    Args:
        opt (dict): Options:
            dataroot_in (str): Folder of images (CUFED's training inputs; any held-out folder for validation).
            gt_size (int): Side of the square images, a multiple of ``scale``. Default: 160.
            use_flip (bool): Random horizontal and vertical flips (p=0.5 each), training only. Default: True.
            use_rot (bool): Random transpose (p=0.5), training only. Default: True.
            max_corner_shift (int): Largest corner displacement of the homography in pixels. Default: 9.
            homography_seed (int): Seed of the validation homographies. Default: 0.
            scale (int): Factor of the LR-up image, must be 4. Default: 4.
            phase (str): Set by BasicSR; ``'train'`` selects random sampling.
            realworld_degradation (dict | None): Real-ESRGAN's degradation options for the LR-up image (as in
                ``RefCUFEDDataset``), training only; null: PIL bicubic. Default: None.

    Samples: ``img1``, ``img1_lr_up``, ``img2`` (3, gt_size, gt_size) float32 RGB in [0, 1]; ``gt_map``
    (2, gt_size, gt_size) float32, the (x, y) pixel position in ``img2`` of every ``img1`` pixel (it may lie outside
    ``img2``); ``img1_path`` (str). With ``realworld_degradation``: no ``img1_lr_up``, but ``kernel1``, ``kernel2``
    and ``sinc_kernel`` (square float32 tensors).
    """

    def __init__(self, opt):
        super().__init__()
        self.opt = opt
        self.scale = check_scale(opt.get('scale', 4))
        self.folder = require_option(opt, 'dataroot_in')
        self.gt_size = opt.get('gt_size', 160)
        self.is_train = opt.get('phase') == 'train'
        self.use_flip = opt.get('use_flip', True) and self.is_train
        self.use_rot = opt.get('use_rot', True) and self.is_train
        self.max_corner_shift = opt.get('max_corner_shift', 9)
        self.homography_seed = opt.get('homography_seed', 0)
        if not isinstance(self.gt_size, int) or self.gt_size <= 0 or self.gt_size % self.scale:
            raise OptionError(f"option 'gt_size' must be a positive multiple of {self.scale}, got {self.gt_size!r}")
        if not isinstance(self.max_corner_shift, int) or self.max_corner_shift < 0:
            raise OptionError(
                f"option 'max_corner_shift' must be a non-negative integer, got {self.max_corner_shift!r}")
        self.degradation = parse_realworld_options(opt.get(BLOCK_KEY))
        if self.degradation is not None:
            if not self.is_train:
                raise OptionError(f"option '{BLOCK_KEY}' is for training datasets only (phase 'train'); validation "
                                  'pairs keep the PIL-bicubic LR-up image')
            check_degradable_size(self.degradation, self.gt_size, self.gt_size, self.scale, "option 'gt_size'")
        self.names = list_image_names(self.folder, 'dataroot_in')

    def __len__(self):
        return len(self.names)

    def sample_rng(self, index):
        """The random source of sample ``index``: seeded from numpy's global state (train) or by the index."""
        if self.is_train:
            return np.random.default_rng(np.random.randint(2**31))
        return np.random.default_rng([self.homography_seed, index])

    def __getitem__(self, index):
        rng = self.sample_rng(index)
        path = osp.join(self.folder, self.names[index])
        img1 = pil_bicubic_resize(read_image_rgb(path), (self.gt_size, self.gt_size))
        flips = rng.random(3) < 0.5
        img1, = dihedral_augment([img1],
                                 hflip=self.use_flip and flips[0],
                                 vflip=self.use_flip and flips[1],
                                 transpose=self.use_rot and flips[2])
        img2, gt_map = warp_with_homography(img1, random_homography(self.gt_size, self.max_corner_shift, rng))
        images = {'img1': img1}
        if self.degradation is None:
            images['img1_lr_up'] = make_lr_pair(img1, self.scale)[1]
        images['img2'] = img2
        sample = dict(
            zip(images, img2tensor([img.astype(np.float32) / 255. for img in images.values()], bgr2rgb=False)))
        sample.update(gt_map=torch.from_numpy(gt_map), img1_path=path)
        if self.degradation is not None:
            sample.update(draw_degradation_kernels(self.degradation))
        return sample
