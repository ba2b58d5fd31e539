"""FRFSR learns to transfer texture from the reference: a tiny stage-1 model trained on a copy-friendly task.

Training pairs are 64-pixel crops of real photos whose reference is the same scene displaced by one or two LR pixels
(4 or 8 HR pixels, never 0) on each axis. Only matching, pre-offsets, deformable alignment and aggregation together
can use such a reference: the DCN samples the raw reference at the matched positions, and nothing else sees the HR
reference. On held-out crops of other photos, the trained model must then score clearly higher with the relevant
reference than with the reference of another crop.

Measured (200 iterations, 156 s on 2 cores): 27.01 dB with the relevant reference against 26.59 dB with an unrelated
one (margin 0.42 dB; bilinear 26.70 dB). Broken on purpose, the margin collapses below MARGIN_DB: pre-offsets zeroed
(``flow_to_pre_offsets`` returning zeros) 0.06 dB; the DCN's (dy, dx) offset order swapped 0.01 dB. A permutation of
the 3x3 taps applied consistently (each tap samples another tap's position) left 0.29 dB: trained from scratch, the
weights absorb it, so the equality tests against direct formulas and the official code catch that one, not this.
"""
import numpy as np
import pytest
import torch
from basicsr.models import build_model
from basicsr.utils import img2tensor, set_random_seed
from helpers import load_config

from frfsr_plugin.cli.demo_data import load_photo
from frfsr_plugin.data.transforms import make_lr_pair

SIZE = 64
TRAIN_PHOTOS = ('astronaut', 'rocket', 'coffee', 'immunohistochemistry', 'retina', 'brick')
HELD_OUT_PHOTOS = ('chelsea', 'hubble_deep_field')
SHIFTS_LR = (-2, -1, 1, 2)  # reference displacement per axis, in LR pixels
ITERATIONS = 200
MARGIN_DB = 0.25  # relevant over unrelated reference, PSNR on held-out photos


def copy_pairs(photos, count, rng):
    """``count`` training samples: an HR crop and its reference, the same scene displaced by whole LR pixels.

    Returns:
        list[dict]: ``gt``, ``ref``, ``lq_up`` (3, 64, 64) and ``lq`` (3, 16, 16) float RGB tensors in [0, 1].
    """
    margin = 4 * max(SHIFTS_LR)
    samples = []
    for index in range(count):
        photo = load_photo(photos[index % len(photos)])
        top = int(rng.integers(margin, photo.shape[0] - SIZE - margin))
        left = int(rng.integers(margin, photo.shape[1] - SIZE - margin))
        shift_y, shift_x = 4 * rng.choice(SHIFTS_LR, size=2)
        gt = photo[top:top + SIZE, left:left + SIZE]
        ref = photo[top + shift_y:top + shift_y + SIZE, left + shift_x:left + shift_x + SIZE]
        lq, lq_up = make_lr_pair(gt, 4)
        samples.append({
            key: img2tensor(img.astype(np.float32) / 255., bgr2rgb=False)
            for key, img in (('gt', gt), ('ref', ref), ('lq', lq), ('lq_up', lq_up))
        })
    return samples


def collate(samples):
    return {key: torch.stack([sample[key] for sample in samples]) for key in samples[0]}


def psnr(output, gt):
    """Mean RGB PSNR (dB) over a batch of [0, 1] images."""
    mse = ((output.clamp(0, 1) - gt)**2).mean((1, 2, 3))
    return (10 * torch.log10(1 / mse)).mean().item()


@pytest.fixture(scope='module')
def copy_model():
    """A tiny FRFSR stage 1 trained for 200 iterations (batch 2) on the copy task, in this process."""
    opt = load_config('copy_task_train')
    opt.update(is_train=True, dist=False, rank=0, world_size=1)
    set_random_seed(0)
    model = build_model(opt)
    rng = np.random.default_rng(0)
    train = copy_pairs(TRAIN_PHOTOS, 48, rng)
    for step in range(1, ITERATIONS + 1):
        model.feed_data(collate([train[i] for i in rng.choice(len(train), 2, replace=False)]))
        model.optimize_parameters(step)
    return model


@pytest.mark.integration
def test_the_relevant_reference_beats_an_unrelated_one_on_held_out_photos(copy_model):
    held_out = collate(copy_pairs(HELD_OUT_PHOTOS, 8, np.random.default_rng(1)))
    scores = {}
    for name, refs in (('relevant', held_out['ref']), ('unrelated', held_out['ref'].roll(1, 0))):
        copy_model.feed_data(dict(held_out, ref=refs))
        copy_model.test()
        scores[name] = psnr(copy_model.output, held_out['gt'])
    bilinear = torch.nn.functional.interpolate(held_out['lq'], scale_factor=4, mode='bilinear', align_corners=False)
    print(f"held-out PSNR: relevant {scores['relevant']:.2f} dB, unrelated {scores['unrelated']:.2f} dB, "
          f"bilinear {psnr(bilinear, held_out['gt']):.2f} dB")
    assert scores['relevant'] > scores['unrelated'] + MARGIN_DB
    assert scores['relevant'] > psnr(bilinear, held_out['gt'])
