"""Image and option helpers shared by the FRFSR datasets.

Images are numpy arrays in (H, W, C) layout; unless stated otherwise they are RGB ``uint8``. Random helpers take their
randomness explicitly so that the train dataset can use numpy's global state (seeded per worker by BasicSR) and the
test dataset a private ``numpy.random.Generator``.
"""
from os import path as osp

import cv2
import numpy as np
from basicsr.data.transforms import mod_crop
from basicsr.utils import img2tensor, scandir
from PIL import Image
from torchvision.transforms import functional as TF

from frfsr_plugin.utils.errors import BadFileError, MissingFileError, MissingOptionError, OptionError

__all__ = [
    'IMG_EXTENSIONS', 'check_scale', 'color_jitter', 'dihedral_augment', 'list_image_names', 'make_lr_pair',
    'make_sample', 'mod_crop', 'pad_to', 'pad_to_common_canvas', 'pil_bicubic_resize', 'read_image_rgb',
    'require_option', 'shuffle_patches'
]

IMG_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')
SUPPORTED_SCALE = 4


def require_option(opt, key):
    """Return ``opt[key]``, raising a KeyError that names the option when it is missing or null."""
    if opt.get(key) is None:
        raise MissingOptionError(f"dataset option '{key}' is required")
    return opt[key]


def check_scale(scale):
    """Return ``scale`` if it is the supported SR factor (4), else raise ValueError."""
    if scale != SUPPORTED_SCALE:
        raise OptionError(f"option 'scale' must be {SUPPORTED_SCALE} for the FRFSR datasets, got {scale!r}")
    return scale


def list_image_names(folder, key):
    """Sorted image file names (not paths) directly inside ``folder``.

    Args:
        folder (str): Folder to scan (not recursive; hidden files are skipped).
        key (str): Option key the folder came from, used in error messages.

    Returns:
        list[str]: Non-empty sorted list of names whose extension is in ``IMG_EXTENSIONS`` (case-insensitive).
    """
    if not osp.isdir(folder):
        raise MissingFileError(f"option '{key}': folder '{folder}' does not exist")
    names = sorted(name for name in scandir(folder) if name.lower().endswith(IMG_EXTENSIONS))
    if not names:
        raise OptionError(f"option '{key}': no images ({', '.join(IMG_EXTENSIONS)}) found in '{folder}'")
    return names


def _to_uint8(img, path):
    """Convert a uint8 or uint16 array to uint8 (16-bit values v become round(v / 257))."""
    if img.dtype == np.uint8:
        return img
    if img.dtype == np.uint16:
        return np.round(img / 257.).astype(np.uint8)
    raise BadFileError(f"unsupported pixel type {img.dtype} in image '{path}' (expected 8- or 16-bit)")


def _check_jpeg_complete(path):
    """A JPEG must end with its end-of-image marker; OpenCV silently decodes a truncated one half grey."""
    with open(path, 'rb') as file:
        if file.read(2) != b'\xff\xd8':
            return
        file.seek(max(0, osp.getsize(path) - 64))
        if not file.read().rstrip(b'\x00\r\n ').endswith(b'\xff\xd9'):
            raise BadFileError(f"image file '{path}' is a truncated JPEG (no end-of-image marker)")


def read_image_rgb(path):
    """Read an image file as RGB uint8.

    Grayscale images are replicated to 3 channels, an alpha channel is dropped and 16-bit images are scaled to 8 bits
    with round(v / 257).

    Args:
        path (str): Image file.

    Returns:
        ndarray: (H, W, 3) uint8 RGB image.

    Raises:
        FileNotFoundError: ``path`` is not a file.
        ValueError: The file is truncated, cannot be decoded or has an unsupported pixel type / channel count.
    """
    if not osp.isfile(path):
        raise MissingFileError(f"image file '{path}' does not exist")
    _check_jpeg_complete(path)
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise BadFileError(f"could not decode image file '{path}' (truncated, corrupt or not an image)")
    img = _to_uint8(img, path)
    if img.ndim == 2:
        img = img[..., None]
    channels = img.shape[2]
    if channels in (1, 2):  # gray or gray + alpha
        return np.repeat(img[..., :1], 3, axis=2)
    if channels == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if channels == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    raise BadFileError(f"unsupported channel count {channels} in image '{path}'")


def pil_bicubic_resize(img, size_hw):
    """PIL bicubic resize of a uint8 image; the result is quantised to uint8.

    Args:
        img (ndarray): (H, W, 3) uint8 image.
        size_hw (tuple[int, int]): Output (height, width).

    Returns:
        ndarray: (height, width, 3) uint8 image.
    """
    height, width = size_hw
    return np.asarray(Image.fromarray(img).resize((width, height), Image.BICUBIC))


def pad_to(img, height, width):
    """Zero-pad an image on the bottom/right to (height, width).

    Args:
        img (ndarray): (H, W, C) image with H <= height and W <= width.
        height (int): Output height.
        width (int): Output width.

    Returns:
        ndarray: (height, width, C) image, the input in its top-left corner (the input itself if no padding is needed).
    """
    pad_h, pad_w = height - img.shape[0], width - img.shape[1]
    if pad_h < 0 or pad_w < 0:
        raise ValueError(f'cannot pad an image of size {img.shape[:2]} to the smaller size {(height, width)}')
    if pad_h == 0 and pad_w == 0:
        return img
    return np.pad(img, ((0, pad_h), (0, pad_w)) + ((0, 0), ) * (img.ndim - 2))


def pad_to_common_canvas(lq, ref, scale):
    """Zero-pad an LR image and a reference on the bottom/right to a common HR canvas, and make the LR-up image.

    The canvas is ``(max(scale h, H), max(scale w, W))``; the LR is padded to the canvas / ``scale`` and up-sampled by
    PIL bicubic. This is how ``frfsr infer`` treats a user's LR and ``RefSRTestDataset`` a given (``dataroot_lq``) LR.

    Args:
        lq (ndarray): (h, w, 3) uint8 LR image.
        ref (ndarray | None): (H, W, 3) uint8 reference, H and W multiples of ``scale`` (mod-cropped); None: the
            canvas is the LR's size times ``scale``.
        scale (int): SR factor.

    Returns:
        tuple[ndarray, ndarray, ndarray | None]: LR (H_c / scale, W_c / scale, 3), LR-up (H_c, W_c, 3) and the
        reference (H_c, W_c, 3) (None if none was given), uint8, on the canvas (H_c, W_c).
    """
    height, width = scale * lq.shape[0], scale * lq.shape[1]
    if ref is not None:
        height, width = max(height, ref.shape[0]), max(width, ref.shape[1])
    lq = pad_to(lq, height // scale, width // scale)
    return lq, pil_bicubic_resize(lq, (height, width)), None if ref is None else pad_to(ref, height, width)


def shuffle_patches(img, grid, rng):
    """Randomly permute a grid x grid set of non-overlapping tiles of an image.

    Tiles have size (H // grid, W // grid); the remainder rows at the bottom and columns at the right, which belong to
    no tile, are zero in the output.

    Args:
        img (ndarray): (H, W, C) image with H >= grid and W >= grid.
        grid (int): Number of tiles per side (>= 1).
        rng (numpy.random.Generator | module): Anything with a numpy-style ``permutation(n)`` method: a
            ``numpy.random.Generator`` (reproducible, independent state) or the ``numpy.random`` module itself
            (global state).

    Returns:
        ndarray: New (H, W, C) array with the permuted tiles.
    """
    height, width, channels = img.shape
    if grid < 1 or height < grid or width < grid:
        raise ValueError(f'cannot cut an image of size {(height, width)} into {grid} x {grid} tiles')
    tile_h, tile_w = height // grid, width // grid
    tiles = img[:grid * tile_h, :grid * tile_w].reshape(grid, tile_h, grid, tile_w, channels).swapaxes(1, 2)
    tiles = tiles.reshape(grid * grid, tile_h, tile_w, channels)[rng.permutation(grid * grid)]
    out = np.zeros_like(img)
    out[:grid * tile_h, :grid * tile_w] = tiles.reshape(grid, grid, tile_h, tile_w, channels).swapaxes(1, 2).reshape(
        grid * tile_h, grid * tile_w, channels)
    return out


def dihedral_augment(imgs, hflip, vflip, transpose):
    """Apply the same horizontal flip, vertical flip and transpose (in this order) to every image.

    Args:
        imgs (list[ndarray]): (H, W, C) images.
        hflip (bool): Flip left-right.
        vflip (bool): Flip top-bottom.
        transpose (bool): Swap the H and W axes (with the flips this gives all 8 rotations/reflections).

    Returns:
        list[ndarray]: Contiguous augmented images, (W, H, C) if ``transpose`` else (H, W, C).
    """

    def _augment(img):
        if hflip:
            img = img[:, ::-1]
        if vflip:
            img = img[::-1]
        if transpose:
            img = img.transpose(1, 0, 2)
        return np.ascontiguousarray(img)

    return [_augment(img) for img in imgs]


def make_lr_pair(hr, scale):
    """Degrade an HR image by PIL bicubic down-sampling, and up-sample the result back.

    Args:
        hr (ndarray): (H, W, 3) uint8 image, H and W positive multiples of ``scale``.
        scale (int): Down-sampling factor.

    Returns:
        tuple[ndarray, ndarray]: ``lq`` (H / scale, W / scale, 3) and ``lq_up`` (H, W, 3), both uint8.
    """
    height, width = hr.shape[:2]
    if height == 0 or width == 0 or height % scale or width % scale:
        raise ValueError(f'HR size {(height, width)} must be a positive multiple of the scale {scale}')
    lq = pil_bicubic_resize(hr, (height // scale, width // scale))
    return lq, pil_bicubic_resize(lq, (height, width))


def color_jitter(img, brightness, contrast, saturation, hue, rng):
    """Random colour jitter with the semantics of ``torchvision.transforms.ColorJitter``, drawn from a numpy RNG.

    The factors are uniform in [1 - b, 1 + b] (brightness, contrast, saturation) and [-hue, hue] (hue), applied in a
    random order, like ColorJitter; drawing them with numpy keeps BasicSR's per-worker seeding in control.

    Args:
        img (ndarray): (H, W, 3) uint8 RGB image.
        brightness, contrast, saturation (float): Jitter strengths (>= 0, < 1).
        hue (float): Hue jitter strength in [0, 0.5].
        rng (numpy.random.Generator | module): Object with numpy-style ``uniform`` and ``permutation``.

    Returns:
        ndarray: (H, W, 3) uint8 RGB image.
    """
    adjustments = [(TF.adjust_brightness, rng.uniform(1 - brightness, 1 + brightness)),
                   (TF.adjust_contrast, rng.uniform(1 - contrast, 1 + contrast)),
                   (TF.adjust_saturation, rng.uniform(1 - saturation, 1 + saturation)),
                   (TF.adjust_hue, rng.uniform(-hue, hue))]
    pil_img = Image.fromarray(img)
    for index in rng.permutation(len(adjustments)):
        adjust, factor = adjustments[index]
        pil_img = adjust(pil_img, float(factor))
    return np.asarray(pil_img)


def make_sample(gt, lq, lq_up, ref, gt_path, ref_path):
    """Build a dataset sample from uint8 images.

    Args:
        gt (ndarray): (H, W, 3) uint8 HR ground truth.
        lq (ndarray | None): (h, w, 3) uint8 LR input; None leaves it out (the model synthesises it from ``gt``).
        lq_up (ndarray | None): (h * scale, w * scale, 3) uint8 up-sampled LR; None leaves it out.
        ref (ndarray): (H_r, W_r, 3) uint8 reference; (h * scale, w * scale) on a padded canvas.
        gt_path (str): GT file, also stored as ``lq_path`` (BasicSR names its outputs after it).
        ref_path (str): Reference file.

    Returns:
        dict: ``gt``, ``lq``, ``lq_up``, ``ref`` (those given): float32 RGB (3, H, W) tensors in [0, 1]; ``lq_path``,
        ``gt_path``, ``ref_path``: str.
    """
    images = {key: img for key, img in zip(('gt', 'lq', 'lq_up', 'ref'), (gt, lq, lq_up, ref)) if img is not None}
    tensors = img2tensor([img.astype(np.float32) / 255. for img in images.values()], bgr2rgb=False)
    sample = dict(zip(images, tensors))
    sample.update(lq_path=gt_path, gt_path=gt_path, ref_path=ref_path)
    return sample
