"""Small CUFED-like and CUFED5-like datasets cut from the photos bundled with scikit-image (nothing is downloaded)."""
import os
from os import path as osp

import cv2
import numpy as np
from skimage import data as skimage_data

from frfsr_plugin.data.transforms import SUPPORTED_SCALE

TRAIN_PHOTOS = ('astronaut', 'rocket', 'hubble_deep_field', 'retina', 'immunohistochemistry', 'brick', 'grass')
TEST_PHOTOS = ('chelsea', 'coffee')
UNRELATED_REF_PHOTO = 'gravel'
LR_PIXEL = SUPPORTED_SCALE  # HR pixels per LR pixel
TRAIN_REF_SHIFT = 2 * LR_PIXEL  # largest displacement of a training reference, HR pixels
UNRELATED_TRAIN_REF_EVERY = 4  # one training reference in 4 shows another photo
SAME_SCENE_SHIFTS = (0.05, 0.25, 0.6)  # displacement of the level-1..3 test references, fraction of the crop size


def load_photo(name):
    """A scikit-image sample photo as RGB uint8 (H, W, 3); grayscale textures are replicated to 3 channels."""
    img = getattr(skimage_data, name)()
    return np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img[..., :3]


def write_rgb(path, img):
    os.makedirs(osp.dirname(path), exist_ok=True)
    if not cv2.imwrite(path, cv2.cvtColor(img, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write '{path}'")


def crop(img, top, left, height, width):
    """Crop clamped to the image bounds, shape (height, width, 3)."""
    top = int(np.clip(top, 0, img.shape[0] - height))
    left = int(np.clip(left, 0, img.shape[1] - width))
    return img[top:top + height, left:left + width]


def grid_aligned_origin(start, desired, length, limit, step=LR_PIXEL):
    """The crop origin nearest ``desired`` that lies a whole number of ``step`` pixels from ``start``.

    Args:
        start (int): Origin of the input crop along this axis.
        desired (int): Wanted origin of the reference crop.
        length (int): Reference crop length, at most ``limit - step``.
        limit (int): Image length.
        step (int): Grid step in HR pixels. Default: 4 (one LR pixel).

    Returns:
        int: An origin in ``[0, limit - length]`` congruent to ``start`` modulo ``step``.
    """
    lowest = -((start - 0) // step)  # the smallest k with start + k step >= 0
    highest = (limit - length - start) // step
    return start + step * int(np.clip(round((desired - start) / step), lowest, highest))


def displaced_crop(img, top, left, size, shift, rng, max_zoom=1.0):
    """A crop of the same scene as the input crop at (top, left), displaced by whole LR pixels.

    The crop has the photo's pixel scale and ``zoom`` in [1, ``max_zoom``) times the input crop's field of view; it is
    centred on the input crop, displaced by up to ``shift`` pixels, and its origin is moved to the nearest position a
    whole number of LR pixels (4 HR pixels) away from the input crop's, so that its texture lies on the LR grid on
    which the correspondence matches patches.

    Args:
        img (ndarray): Photo, (H, W, 3).
        top, left (int): Corner of the input crop.
        size (tuple[int, int]): (height, width) of the input crop.
        shift (int): Largest displacement in HR pixels, before the move to the LR grid.
        rng (numpy.random.Generator): Random source.
        max_zoom (float): Largest field-of-view factor. Default: 1.0 (the input crop's size).

    Returns:
        ndarray: Reference crop, (round(zoom h), round(zoom w), 3), at most the photo's size less one LR pixel.
    """
    zoom = rng.uniform(1.0, max_zoom) if max_zoom > 1 else 1.0
    height, width = (min(int(s * zoom), d - LR_PIXEL) for s, d in zip(size, img.shape[:2]))
    d_top, d_left = rng.integers(-shift, shift + 1, size=2)
    ref_top = grid_aligned_origin(top, top + d_top - (height - size[0]) // 2, height, img.shape[0])
    ref_left = grid_aligned_origin(left, left + d_left - (width - size[1]) // 2, width, img.shape[1])
    return img[ref_top:ref_top + height, ref_left:ref_left + width]


def build_train_set(root, gt_size, crops_per_photo, seed=0, unrelated_every=UNRELATED_TRAIN_REF_EVERY):
    """Write ``root/input/*.png`` (gt_size x gt_size) and ``root/ref/*.png``.

    Most references are the same scene, same size and scale, displaced by up to 2 LR pixels (``displaced_crop``), a
    copy-friendly task that teaches texture transfer fast; every ``unrelated_every``-th one is a crop of another
    photo, so that the model also learns not to copy texture that does not match.

    Args:
        root (str): Output folder.
        gt_size (int): Side of the HR crops.
        crops_per_photo (int): Crops per training photo.
        seed (int): Seed of the crop positions. Default: 0.
        unrelated_every (int): Period of the unrelated references; 0: none. Default: 4.
    """
    rng = np.random.default_rng(seed)
    photos = {name: load_photo(name) for name in TRAIN_PHOTOS}
    for photo_index, (photo_name, photo) in enumerate(photos.items()):
        other = photos[TRAIN_PHOTOS[(photo_index + 1) % len(TRAIN_PHOTOS)]]
        for index in range(crops_per_photo):
            top = int(rng.integers(0, photo.shape[0] - gt_size + 1))
            left = int(rng.integers(0, photo.shape[1] - gt_size + 1))
            name = f'{photo_name}_{index:03d}.png'
            write_rgb(osp.join(root, 'input', name), crop(photo, top, left, gt_size, gt_size))
            if unrelated_every and index % unrelated_every == unrelated_every - 1:
                ref = crop(other, int(rng.integers(0, other.shape[0] - gt_size + 1)),
                           int(rng.integers(0, other.shape[1] - gt_size + 1)), gt_size, gt_size)
            else:
                ref = displaced_crop(photo, top, left, (gt_size, gt_size), TRAIN_REF_SHIFT, rng)
            write_rgb(osp.join(root, 'ref', name), ref)


def build_cufed5_like_set(root, gt_size=(96, 128), groups_per_photo=2, seed=1):
    """Write ``root/XXX_0.png`` GT and ``XXX_1..5.png`` refs of decreasing similarity, as in CUFED5.

    Levels 1 to 3 are crops of the same scene with 1 to 1.3 times its field of view, displaced by 5 %, 25 % and 60 %
    of the crop size and moved onto the LR grid (``displaced_crop``); level 4 is another region of the same photo and
    level 5 an unrelated texture. Groups alternate between the photos, so that the level-1 reference of the next
    group (the robustness evaluation's ``irrelevant`` condition) comes from another photo.
    """
    rng = np.random.default_rng(seed)
    unrelated = load_photo(UNRELATED_REF_PHOTO)
    photos = [load_photo(name) for name in TEST_PHOTOS]
    for group in range(groups_per_photo * len(photos)):
        photo = photos[group % len(photos)]
        top = int(rng.integers(0, photo.shape[0] - gt_size[0] + 1))
        left = int(rng.integers(0, photo.shape[1] - gt_size[1] + 1))
        refs = [
            displaced_crop(photo, top, left, gt_size, int(f * min(gt_size)), rng, max_zoom=1.3)
            for f in SAME_SCENE_SHIFTS
        ]
        refs.append(crop(photo, photo.shape[0] - top - gt_size[0], photo.shape[1] - left - gt_size[1], *gt_size))
        refs.append(crop(unrelated, top, left, *gt_size))
        write_rgb(osp.join(root, f'{group:03d}_0.png'), crop(photo, top, left, *gt_size))
        for level, ref in enumerate(refs, start=1):
            write_rgb(osp.join(root, f'{group:03d}_{level}.png'), ref)
