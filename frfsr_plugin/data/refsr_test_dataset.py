"""Validation / test set for reference-based super-resolution (CUFED5 layout or an explicit pair list)."""
from os import path as osp

import numpy as np
from basicsr.utils.registry import DATASET_REGISTRY
from torch.utils import data

from frfsr_plugin.data.transforms import (check_scale, list_image_names, make_lr_pair, make_sample, mod_crop, pad_to,
                                          pad_to_common_canvas, pil_bicubic_resize, read_image_rgb, require_option,
                                          shuffle_patches)
from frfsr_plugin.utils.errors import BadFileError, InputSizeError, MissingFileError, OptionError

MODES = ('cufed5', 'pairs')
REF_CANVASES = ('padded', 'decoupled')
CUFED5_REF_LEVELS = (1, 2, 3, 4, 5)
LR_REF = 'lr'
TEST_SHUFFLE_GRIDS = (2, 4, 8)


def parse_ref_level(value, mode):
    """Validate option ``ref_level``.

    Args:
        value (int | str | None): 1..5 (mode ``cufed5`` only), ``'lr'``, or None (mode ``pairs``: use the listed refs).
        mode (str): Dataset mode.

    Returns:
        int | str | None: The level as an int, ``'lr'``, or None.
    """
    if isinstance(value, str) and value.strip().lower() == LR_REF:
        return LR_REF
    if mode == 'pairs' and value is None:
        return None
    if mode == 'cufed5' and not isinstance(value, bool) and str(value).strip() in map(str, CUFED5_REF_LEVELS):
        return int(value)
    allowed = "1..5 or 'lr'" if mode == 'cufed5' else "'lr' or unset (use the listed references)"
    raise OptionError(f"option 'ref_level' must be {allowed} in mode '{mode}', got {value!r}")


def read_pair_list(path, gt_root, ref_root):
    """Read a pair-list file with one ``gt_relpath ref_relpath`` per line.

    Blank lines and lines starting with ``#`` are skipped.

    Args:
        path (str): Pair-list file.
        gt_root (str): Folder the GT paths are relative to.
        ref_root (str): Folder the reference paths are relative to.

    Returns:
        list[tuple[str, str]]: Non-empty list of (gt_path, ref_path).
    """
    if not osp.isfile(path):
        raise MissingFileError(f"option 'pair_list': file '{path}' does not exist")
    pairs = []
    with open(path, encoding='utf-8') as f:
        for line_no, line in enumerate(f, start=1):
            fields = line.split()
            if not fields or fields[0].startswith('#'):
                continue
            if len(fields) != 2:
                raise BadFileError(f"pair list '{path}', line {line_no}: expected 2 fields 'gt_relpath ref_relpath', "
                                   f'got {len(fields)}: {line.strip()!r}')
            pairs.append((osp.join(gt_root, fields[0]), osp.join(ref_root, fields[1])))
    if not pairs:
        raise BadFileError(f"option 'pair_list': file '{path}' lists no pairs")
    return pairs


@DATASET_REGISTRY.register()
class RefSRTestDataset(data.Dataset):
    """Reference-based SR test set.

    Per sample, GT and reference are mod-cropped to multiples of 4; if their sizes differ both are zero-padded on the
    bottom/right to (Hp, Wp) = (max height, max width). The LR and its up-sampled version are made by PIL bicubic from
    the padded GT, while ``gt`` stays unpadded. With ``dataroot_lq`` the LR is read instead (e.g. a fixed degraded
    copy written by ``tools/make_degraded_testset.py``): it must be the mod-cropped GT's size / 4 and is zero-padded
    to (Hp / 4, Wp / 4), and ``lq_up`` is its PIL-bicubic x4 (as ``frfsr infer --ref-canvas padded`` pads a user's
    LR). With ``ref_level: lr`` the reference is ``lq_up`` itself. With ``ref_canvas: decoupled`` nothing is padded:
    the LR is made from (or, with ``dataroot_lq``, is) the mod-cropped GT's size / 4 and the reference keeps its
    mod-cropped size, which the reference pipeline matches on its own grid (batches of one sample when sizes vary).

    Args:
        opt (dict): Options:
            mode (str): ``'cufed5'``: flat folder ``dataroot_gt`` of ``XXX_0{ext}`` GTs and ``XXX_1..5{ext}`` refs,
                groups sorted by XXX. ``'pairs'``: the pairs listed in ``pair_list``. Default: ``'cufed5'``.
            dataroot_gt (str): GT folder (also the reference folder in mode ``cufed5``).
            ref_level (int | str): Mode ``cufed5``: 1..5 picks ``XXX_{ref_level}{ext}`` (default 1). Both modes:
                ``'lr'`` uses the up-sampled LR as the reference. Mode ``pairs``: unset uses the listed references.
            ext (str): Image extension in mode ``cufed5``. Default: ``'.png'``.
            pair_list (str): Mode ``pairs``: text file of ``gt_relpath ref_relpath`` lines.
            dataroot_ref (str): Mode ``pairs``: folder of the reference paths. Default: ``dataroot_gt``.
            dataroot_lq (str | None): Folder of given LR images, at the GT's path relative to ``dataroot_gt`` (mode
                ``cufed5``: ``XXX_0{ext}``); None makes the LR from the GT by PIL bicubic. Default: None.
            ref_shuffle_grid (int | None): Shuffle the mod-cropped reference in 2, 4 or 8 tiles per side; None or 0
                disables it. Default: None.
            ref_shuffle_seed (int): The shuffle of sample ``i`` uses ``np.random.default_rng(ref_shuffle_seed + i)``,
                independent of the global RNG state. Default: 0.
            ref_from_other_sample (int): Irrelevant references: sample ``i`` takes the reference that sample
                ``(i + ref_from_other_sample) mod N`` would use (its ``ref_level`` file in mode ``cufed5``, its listed
                reference in mode ``pairs``), before any shuffle. 0 keeps each sample's own reference; values that
                are multiples of N, and ``ref_level: lr``, are errors. Default: 0.
            ref_canvas (str): ``'padded'`` (the papers' protocol) or ``'decoupled'``. Default: ``'padded'``.
            scale (int): SR factor, must be 4. Default: 4.

    Samples: ``gt`` (3, Hg, Wg), ``lq`` (3, Hp / 4, Wp / 4), ``lq_up`` and ``ref`` (3, Hp, Wp), float32 RGB in [0, 1]
    (decoupled: ``lq`` (3, Hg / 4, Wg / 4), ``lq_up`` (3, Hg, Wg), ``ref`` (3, Hr, Wr), the mod-cropped reference);
    ``lq_path`` = ``gt_path`` and ``ref_path`` (str; the GT path when ``ref_level`` is ``'lr'``, the other sample's
    reference with ``ref_from_other_sample``).
    """

    def __init__(self, opt):
        super().__init__()
        self.opt = opt
        self.scale = check_scale(opt.get('scale', 4))
        self.gt_folder = require_option(opt, 'dataroot_gt')
        mode = opt.get('mode', 'cufed5')
        if mode not in MODES:
            raise OptionError(f"option 'mode' must be one of {MODES}, got {mode!r}")
        self.ref_level = parse_ref_level(opt.get('ref_level', 1 if mode == 'cufed5' else None), mode)
        self.ref_shuffle_grid = opt.get('ref_shuffle_grid') or None
        self.ref_shuffle_seed = int(opt.get('ref_shuffle_seed', 0))
        self.lq_folder = opt.get('dataroot_lq')
        self.ref_canvas = opt.get('ref_canvas', 'padded')
        if self.ref_canvas not in REF_CANVASES:
            raise OptionError(f"option 'ref_canvas' must be one of {REF_CANVASES}, got {self.ref_canvas!r}")
        self._check_shuffle_options()
        if mode == 'cufed5':
            pairs = self._cufed5_pairs(opt.get('ext', '.png'))
        else:
            ref_root = opt.get('dataroot_ref') or self.gt_folder
            pairs = read_pair_list(require_option(opt, 'pair_list'), self.gt_folder, ref_root)
        if self.ref_level == LR_REF:  # the reference is made from the GT itself
            pairs = [(gt_path, gt_path) for gt_path, _ in pairs]
        self.pairs = self._borrow_references(pairs, opt.get('ref_from_other_sample') or 0)
        self._check_files_exist()

    def _check_shuffle_options(self):
        if self.ref_shuffle_grid is None:
            return
        if self.ref_shuffle_grid not in TEST_SHUFFLE_GRIDS:
            raise OptionError(f"option 'ref_shuffle_grid' must be None, 0 or one of {TEST_SHUFFLE_GRIDS}, "
                              f'got {self.ref_shuffle_grid!r}')
        if self.ref_level == LR_REF:
            raise OptionError("option 'ref_shuffle_grid' cannot be used with 'ref_level: lr'")

    def _borrow_references(self, pairs, offset):
        """Pairs whose reference is the one of the pair ``offset`` places further (cyclically); 0 keeps them."""
        if offset == 0:
            return pairs
        if isinstance(offset, bool) or not isinstance(offset, int):
            raise OptionError(f"option 'ref_from_other_sample' must be an integer offset, got {offset!r}")
        if self.ref_level == LR_REF:
            raise OptionError("option 'ref_from_other_sample' cannot be used with 'ref_level: lr'")
        if offset % len(pairs) == 0:
            raise OptionError(f"option 'ref_from_other_sample': offset {offset} is a multiple of the number of samples "
                              f'({len(pairs)}), so every sample would keep its own reference')
        return [(gt_path, pairs[(index + offset) % len(pairs)][1]) for index, (gt_path, _) in enumerate(pairs)]

    def _cufed5_pairs(self, ext):
        """(gt_path, ref_path) of the sorted groups XXX having an ``XXX_0{ext}`` file."""
        gt_suffix = f'_0{ext}'
        groups = [
            name[:-len(gt_suffix)] for name in list_image_names(self.gt_folder, 'dataroot_gt')
            if name.endswith(gt_suffix)
        ]
        if not groups:
            raise OptionError(f"option 'dataroot_gt': no CUFED5 ground truth '*{gt_suffix}' in '{self.gt_folder}'")
        folder = self.gt_folder
        return [(osp.join(folder, f'{group}{gt_suffix}'), osp.join(folder, f'{group}_{self.ref_level}{ext}'))
                for group in groups]

    def _check_files_exist(self):
        if self.lq_folder is not None and not osp.isdir(self.lq_folder):
            raise MissingFileError(f"option 'dataroot_lq': folder '{self.lq_folder}' does not exist")
        for index, (gt_path, ref_path) in enumerate(self.pairs):
            for path in (gt_path, ref_path) + ((self._lq_path(gt_path), ) if self.lq_folder is not None else ()):
                if not osp.isfile(path):
                    raise MissingFileError(f"test pair {index}: image file '{path}' does not exist")

    def _lq_path(self, gt_path):
        """The given LR file of a GT: its path relative to ``dataroot_gt``, under ``dataroot_lq``."""
        return osp.join(self.lq_folder, osp.relpath(gt_path, self.gt_folder))

    def _read_lq(self, gt_path, gt):
        """The ``dataroot_lq`` file of a GT, (h, w, 3) uint8; it must be the mod-cropped GT's size / 4."""
        lq_path = self._lq_path(gt_path)
        lq = read_image_rgb(lq_path)
        expected = (gt.shape[0] // self.scale, gt.shape[1] // self.scale)
        if lq.shape[:2] != expected:
            raise InputSizeError(f"LR image '{lq_path}' is {lq.shape[0]}x{lq.shape[1]}, expected "
                                 f"{expected[0]}x{expected[1]} (the mod-cropped GT '{gt_path}' / {self.scale})")
        return lq

    def __len__(self):
        return len(self.pairs)

    def __getitem__(self, index):
        gt_path, ref_path = self.pairs[index]
        gt = mod_crop(read_image_rgb(gt_path), self.scale)
        ref = None
        if self.ref_level != LR_REF:
            ref = mod_crop(read_image_rgb(ref_path), self.scale)
            if self.ref_shuffle_grid:
                ref = shuffle_patches(ref, self.ref_shuffle_grid, np.random.default_rng(self.ref_shuffle_seed + index))
        if self.ref_canvas == 'decoupled':  # LR and reference at their own sizes
            if self.lq_folder is None:
                lq, lq_up = make_lr_pair(gt, self.scale)
            else:
                lq = self._read_lq(gt_path, gt)
                lq_up = pil_bicubic_resize(lq, gt.shape[:2])
        elif self.lq_folder is not None:  # the given LR, padded as frfsr infer pads a user's LR
            lq, lq_up, ref = pad_to_common_canvas(self._read_lq(gt_path, gt), ref, self.scale)
        else:  # the PIL-bicubic LR of the GT zero-padded to the canvas
            canvas = gt.shape[:2] if ref is None else tuple(map(max, gt.shape[:2], ref.shape[:2]))
            lq, lq_up = make_lr_pair(pad_to(gt, *canvas), self.scale)
            ref = None if ref is None else pad_to(ref, *canvas)
        return make_sample(gt, lq, lq_up, lq_up if ref is None else ref, gt_path, ref_path)
