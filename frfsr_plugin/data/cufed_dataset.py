"""CUFED training set for reference-based super-resolution."""
from os import path as osp

import numpy as np
from basicsr.utils import get_root_logger
from basicsr.utils.registry import DATASET_REGISTRY
from torch.utils import data

from frfsr_plugin.data.realworld_degradation import (BLOCK_KEY, check_degradable_size, draw_degradation_kernels,
                                                     parse_realworld_options)
from frfsr_plugin.data.transforms import (check_scale, color_jitter, dihedral_augment, list_image_names, make_lr_pair,
                                          make_sample, pad_to, pil_bicubic_resize, read_image_rgb, require_option,
                                          shuffle_patches)
from frfsr_plugin.utils.errors import BadFileError, MissingFileError, OptionError

REF_COLOR_JITTER = dict(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.05)


@DATASET_REGISTRY.register()
class RefCUFEDDataset(data.Dataset):
    """CUFED training pairs: input ``dataroot_gt/NAME`` with reference ``dataroot_ref/NAME``.

    Per sample: the reference is optionally colour-jittered and PIL-bicubic resized to gt_size x gt_size; the input is
    zero-padded (bottom/right) to at least gt_size and randomly cropped to gt_size x gt_size; both get the same random
    flips/transpose; the LR and its up-sampled version are made from the augmented input by PIL bicubic; finally the
    reference tiles are shuffled with probability ``ref_shuffle_prob``. With ``realworld_degradation`` the LR is not
    made here: the sample carries the three blur kernels of Real-ESRGAN's pipeline instead, drawn after everything
    else (so from the same random state GT and reference equal the bicubic sample's), and the model degrades the GT
    batch on its device (``frfsr_plugin/ops/realworld_degradation.py``). All randomness comes from numpy's (and, for
    the kernels, Python's) global state, which BasicSR seeds per worker, so samples are reproducible for a given seed.

    Args:
        opt (dict): Options:
            dataroot_gt (str): Folder of the input (HR) images.
            dataroot_ref (str): Folder of the references, with the same file names.
            gt_size (int): Size of the square HR/reference crop, a multiple of ``scale``. Default: 160.
            use_flip (bool): Random horizontal and vertical flips (p=0.5 each). Default: True.
            use_rot (bool): Random transpose (p=0.5). Default: True.
            ref_shuffle_prob (float): Probability of shuffling the reference tiles. Default: 0.5.
            ref_shuffle_grid (int): Tiles per side of the reference shuffle. Default: 5.
            use_color_jitter (bool): ColorJitter(0.2, 0.2, 0.2, 0.05) on the reference. Default: False.
            scale (int): SR factor, must be 4. Default: 4.
            skip_unreadable (bool): A sample whose input or reference is missing, truncated or not an image is
                replaced by the next readable one, with a logged warning, instead of stopping training. Default: False.
            realworld_degradation (dict | None): Real-ESRGAN's degradation options for the LR side (its key names;
                keys left out take its x4 values; ``frfsr_plugin/data/realworld_degradation.py``); null: PIL bicubic
                LR, the paper's protocol. Default: None.

    Samples: ``gt``, ``ref``, ``lq_up`` (3, gt_size, gt_size), ``lq`` (3, gt_size / 4, gt_size / 4), float32 RGB in
    [0, 1]; ``lq_path`` = ``gt_path`` and ``ref_path`` (str). With ``realworld_degradation``: no ``lq`` / ``lq_up``,
    but ``kernel1`` (k1, k1), ``kernel2`` (k2, k2) and ``sinc_kernel`` (21, 21) float32 tensors.
    """

    def __init__(self, opt):
        super().__init__()
        self.opt = opt
        self.scale = check_scale(opt.get('scale', 4))
        self.gt_folder = require_option(opt, 'dataroot_gt')
        self.ref_folder = require_option(opt, 'dataroot_ref')
        self.gt_size = opt.get('gt_size', 160)
        self.use_flip = opt.get('use_flip', True)
        self.use_rot = opt.get('use_rot', True)
        self.ref_shuffle_prob = opt.get('ref_shuffle_prob', 0.5)
        self.ref_shuffle_grid = opt.get('ref_shuffle_grid', 5)
        self.use_color_jitter = opt.get('use_color_jitter', False)
        self.skip_unreadable = opt.get('skip_unreadable', False)
        self.degradation = parse_realworld_options(opt.get(BLOCK_KEY))
        self._check_options()
        self.names = list_image_names(self.gt_folder, 'dataroot_gt')
        self._check_refs()

    def _check_options(self):
        if not isinstance(self.gt_size, int) or self.gt_size <= 0 or self.gt_size % self.scale:
            raise OptionError(f"option 'gt_size' must be a positive multiple of {self.scale}, got {self.gt_size!r}")
        if not 0 <= self.ref_shuffle_prob <= 1:
            raise OptionError(f"option 'ref_shuffle_prob' must be in [0, 1], got {self.ref_shuffle_prob!r}")
        if not isinstance(self.ref_shuffle_grid, int) or not 1 <= self.ref_shuffle_grid <= self.gt_size:
            raise OptionError(f"option 'ref_shuffle_grid' must be an integer in [1, gt_size], "
                              f'got {self.ref_shuffle_grid!r}')
        if self.degradation is not None:
            check_degradable_size(self.degradation, self.gt_size, self.gt_size, self.scale, "option 'gt_size'")

    def _check_refs(self):
        ref_names = set(list_image_names(self.ref_folder, 'dataroot_ref'))
        missing = [name for name in self.names if name not in ref_names]
        if missing:
            raise MissingFileError(f"{len(missing)} input image(s) have no reference in '{self.ref_folder}' "
                                   f"(option 'dataroot_ref'), e.g. '{missing[0]}'")

    def __len__(self):
        return len(self.names)

    def __getitem__(self, index):
        for attempt in range(len(self.names)):
            name = self.names[(index + attempt) % len(self.names)]
            gt_path, ref_path = osp.join(self.gt_folder, name), osp.join(self.ref_folder, name)
            try:
                return self._make_sample(read_image_rgb(gt_path), read_image_rgb(ref_path), gt_path, ref_path)
            except (MissingFileError, BadFileError) as error:
                if not self.skip_unreadable:
                    raise
                get_root_logger().warning(f'RefCUFEDDataset: skipped sample {name!r}: {error}')
        raise BadFileError(f"no readable sample in '{self.gt_folder}' / '{self.ref_folder}'")

    def _make_sample(self, gt, ref, gt_path, ref_path):
        """Augmented sample (see the class docstring) from an (H, W, 3) input and reference."""
        if self.use_color_jitter:
            ref = color_jitter(ref, rng=np.random, **REF_COLOR_JITTER)
        ref = pil_bicubic_resize(ref, (self.gt_size, self.gt_size))
        gt = self._random_crop(gt)
        gt, ref = dihedral_augment([gt, ref],
                                   hflip=self._coin(self.use_flip),
                                   vflip=self._coin(self.use_flip),
                                   transpose=self._coin(self.use_rot))
        if np.random.rand() < self.ref_shuffle_prob:
            ref = shuffle_patches(ref, self.ref_shuffle_grid, np.random)
        if self.degradation is None:
            return make_sample(gt, *make_lr_pair(gt, self.scale), ref, gt_path, ref_path)
        return {**make_sample(gt, None, None, ref, gt_path, ref_path), **draw_degradation_kernels(self.degradation)}

    def _random_crop(self, img):
        """Zero-pad (bottom/right) an (H, W, 3) image to at least gt_size, then crop a random (gt_size, gt_size, 3)."""
        size = self.gt_size
        img = pad_to(img, max(img.shape[0], size), max(img.shape[1], size))
        top = np.random.randint(0, img.shape[0] - size + 1)
        left = np.random.randint(0, img.shape[1] - size + 1)
        return img[top:top + size, left:left + size]

    @staticmethod
    def _coin(enabled):
        """True with probability 0.5 if ``enabled``, else False (no random draw)."""
        return enabled and np.random.rand() < 0.5
