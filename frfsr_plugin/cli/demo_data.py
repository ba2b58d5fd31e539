"""Small CUFED-like and CUFED5-like datasets cut from the photos bundled with scikit-image (nothing is downloaded)."""
import os
from os import path as osp

import cv2
import numpy as np
from skimage import data as skimage_data

TRAIN_PHOTOS = ('astronaut', 'rocket', 'hubble_deep_field', 'retina', 'immunohistochemistry', 'brick', 'grass')
TEST_PHOTOS = ('chelsea', 'coffee')
UNRELATED_REF_PHOTO = 'gravel'


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


def reference_crop(img, top, left, size, shift, rng):
    """A crop of the same scene around (top, left), displaced by up to ``shift`` pixels, 1 to 1.3 times larger.

    Args:
        img (ndarray): Photo, (H, W, 3).
        top, left (int): Corner of the input crop.
        size (tuple[int, int]): (height, width) of the input crop.
        shift (int): Maximum displacement in pixels.
        rng (numpy.random.Generator): Random source.

    Returns:
        ndarray: Reference crop, roughly ``size`` times a random zoom.
    """
    zoom = rng.uniform(1.0, 1.3)
    height, width = (min(int(s * zoom), d) for s, d in zip(size, img.shape[:2]))
    d_top, d_left = rng.integers(-shift, shift + 1, size=2)
    return crop(img, top + d_top - (height - size[0]) // 2, left + d_left - (width - size[1]) // 2, height, width)


def build_train_set(root, gt_size, crops_per_photo, seed=0):
    """Write ``root/input/*.png`` (gt_size x gt_size) and ``root/ref/*.png`` (related crops of other sizes)."""
    rng = np.random.default_rng(seed)
    for photo_name in TRAIN_PHOTOS:
        photo = load_photo(photo_name)
        for index in range(crops_per_photo):
            top = int(rng.integers(0, photo.shape[0] - gt_size + 1))
            left = int(rng.integers(0, photo.shape[1] - gt_size + 1))
            name = f'{photo_name}_{index:03d}.png'
            write_rgb(osp.join(root, 'input', name), crop(photo, top, left, gt_size, gt_size))
            write_rgb(
                osp.join(root, 'ref', name), reference_crop(photo, top, left, (gt_size, gt_size), gt_size // 2, rng))


def build_cufed5_like_set(root, gt_size=(96, 128), groups_per_photo=2, seed=1):
    """Write ``root/XXX_0.png`` GT and ``XXX_1..5.png`` refs of decreasing similarity, as in CUFED5.

    Levels 1 to 3 are crops of the same scene displaced by 5 %, 25 % and 60 % of the crop size; level 4 is another
    region of the same photo and level 5 an unrelated texture.
    """
    rng = np.random.default_rng(seed)
    unrelated = load_photo(UNRELATED_REF_PHOTO)
    group = 0
    for photo_name in TEST_PHOTOS:
        photo = load_photo(photo_name)
        for _ in range(groups_per_photo):
            top = int(rng.integers(0, photo.shape[0] - gt_size[0] + 1))
            left = int(rng.integers(0, photo.shape[1] - gt_size[1] + 1))
            refs = [reference_crop(photo, top, left, gt_size, int(f * min(gt_size)), rng) for f in (0.05, 0.25, 0.6)]
            refs.append(crop(photo, photo.shape[0] - top - gt_size[0], photo.shape[1] - left - gt_size[1], *gt_size))
            refs.append(crop(unrelated, top, left, *gt_size))
            write_rgb(osp.join(root, f'{group:03d}_0.png'), crop(photo, top, left, *gt_size))
            for level, ref in enumerate(refs, start=1):
                write_rgb(osp.join(root, f'{group:03d}_{level}.png'), ref)
            group += 1
