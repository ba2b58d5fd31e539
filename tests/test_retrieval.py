"""Retrieval of references among candidate photos (``restoration/retrieval.py``, ``frfsr rank``, ``frfsr infer
--top-k``) on scikit-image's photos, with the random texture encoder (its two branches start identical, so it maps the
LR-up image and the references into one feature space)."""
import cv2
import numpy as np
import pytest
import torch
from skimage import data as skimage_data

from frfsr_plugin.cli import frfsr_cli
from frfsr_plugin.data.transforms import pil_bicubic_resize, read_image_rgb
from frfsr_plugin.ops.patch_match import match_patches_direct
from frfsr_plugin.restoration.pipeline import build_reference_networks, random_reference_network_options
from frfsr_plugin.restoration.retrieval import ReferenceRetriever, texture_descriptor

DISTRACTORS = ('chelsea', 'astronaut', 'rocket', 'camera', 'brick', 'grass', 'page', 'coins', 'horse',
               'immunohistochemistry')


def rgb(name):
    image = getattr(skimage_data, name)()
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, 2)
    return np.ascontiguousarray(image[..., :3].astype(np.uint8))


def query(name):
    """An LR (PIL-bicubic /4 of the top-left 2/3 of a photo) and the relevant reference: the bottom-right 2/3 of the
    same photo, displaced by a third of its size."""
    photo = rgb(name)
    height, width = photo.shape[:2]
    hr = photo[:height * 2 // 3 // 4 * 4, :width * 2 // 3 // 4 * 4]
    return pil_bicubic_resize(hr, (hr.shape[0] // 4, hr.shape[1] // 4)), photo[height // 3:, width // 3:]


def write_png(path, image):
    cv2.imwrite(str(path), np.ascontiguousarray(image[..., ::-1]))
    return str(path)


@pytest.fixture(scope='module')
def retriever():
    torch.manual_seed(0)
    return ReferenceRetriever(build_reference_networks(random_reference_network_options())[0])


def candidate_folder(folder, name, relevant):
    """The distractors other than ``name`` and the relevant reference, as PNGs in ``folder``; returns their paths."""
    folder.mkdir(exist_ok=True)
    paths = [write_png(folder / f'{other}.png', rgb(other)) for other in DISTRACTORS if other != name]
    return paths + [write_png(folder / f'relevant_{name}.png', relevant)]


def test_descriptor_is_the_unit_log_standard_deviation_of_each_channel():
    features = torch.randn(2, 5, 7, 9) * torch.arange(1., 6.).view(1, 5, 1, 1)
    direct = np.log(features.numpy().reshape(2, 5, -1).std(-1))
    direct /= np.linalg.norm(direct, axis=1, keepdims=True)
    np.testing.assert_allclose(texture_descriptor(features).numpy(), direct, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('name', ['coffee', 'astronaut', 'rocket'])
def test_the_relevant_reference_ranks_first_among_distractors(retriever, tmp_path, name):
    """A displaced crop of the LR's own photo against 9-10 other photos: the global descriptor puts it in the
    shortlist of 3, and the dense match score puts it first. The match score is the mean over LR patches of the best
    cosine similarity, as the direct patch-vector matcher computes it."""
    lr, relevant = query(name)
    paths = candidate_folder(tmp_path, name, relevant)
    ranking = retriever.rank(lr, paths, rerank=3)
    assert ranking.paths[0] == paths[-1] and not ranking.skipped
    assert [candidate.match_score is not None for candidate in ranking.candidates] == [True] * 3 + [False] * (
        len(paths) - 3)
    lr_up = pil_bicubic_resize(lr, (4 * lr.shape[0], 4 * lr.shape[1]))
    with torch.no_grad():
        feat_lq = retriever.encode(lr_up, 'encode_lr')
        feat_ref = retriever.encode(read_image_rgb(paths[-1]), 'encode_reference')
        direct = match_patches_direct(feat_lq, feat_ref)[1].mean()
    assert ranking.candidates[0].match_score == pytest.approx(float(direct), abs=1e-4)


def test_frfsr_rank_prints_the_ranking_and_skips_bad_files(loud_checkpoints, tmp_path, capsys):
    lr, relevant = query('coffee')
    folder = tmp_path / 'candidates'
    paths = candidate_folder(folder, 'coffee', relevant)
    (folder / 'notes.txt').write_text('not an image')
    (folder / 'broken.png').write_bytes(b'\x89PNG broken')
    lr_path = write_png(tmp_path / 'lr.png', lr)
    assert frfsr_cli.main(['rank', '--opt', loud_checkpoints['stage1'], '--lr', lr_path, '--ref-dir', str(folder)]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].startswith('references for lr.png') and lines[1].endswith(paths[-1])
    assert len(lines) == 2 + len(paths) and lines[-1].startswith(f'ranked {len(paths)} candidates in')
    assert 'notes.txt' in err and 'broken.png' in err and err.count('warning') == 2


def test_frfsr_infer_top_k_uses_the_best_candidates(loud_checkpoints, tmp_path, capsys):
    """``--top-k 1`` among the candidates gives the SR of ``--ref`` with the relevant reference alone."""
    lr, relevant = query('coffee')
    paths = candidate_folder(tmp_path / 'candidates', 'coffee', relevant)
    lr_path = write_png(tmp_path / 'lr.png', lr)
    common = ['infer', '--opt', loud_checkpoints['stage1'], '--weights', loud_checkpoints['net1'], '--lr', lr_path]
    torch.manual_seed(0)  # the same random frozen networks in both runs
    assert frfsr_cli.main(common + ['--ref-dir', str(tmp_path / 'candidates'), '--top-k', '1', '-o',
                                    str(tmp_path / 'top1.png')]) == 0
    torch.manual_seed(0)
    assert frfsr_cli.main(common + ['--ref', paths[-1], '-o', str(tmp_path / 'direct.png')]) == 0
    assert capsys.readouterr().out.splitlines()[1].endswith(paths[-1])
    assert np.array_equal(read_image_rgb(str(tmp_path / 'top1.png')), read_image_rgb(str(tmp_path / 'direct.png')))


@pytest.mark.parametrize('arguments, message', [
    (['--top-k', '2'], '--top-k picks references among the candidates of --ref-dir'),
    (['--ref-dir', 'CANDIDATES', '--top-k', '0'], '--top-k must be at least 1, got 0.'),
    (['--ref-dir', 'CANDIDATES', '--top-k', '1', '--rerank', '0'], '--rerank must be at least 1, got 0.'),
    (['--ref-dir', 'EMPTY', '--top-k', '1'], '--ref-dir: no images'),
    (['--ref-dir', 'BROKEN', '--top-k', '1'], 'none of the 1 candidates is a usable reference.'),
])
def test_bad_retrieval_input_is_one_line(loud_checkpoints, tmp_path, capsys, arguments, message):
    lr_path = write_png(tmp_path / 'lr.png', query('coffee')[0][:40, :56])
    folders = {'CANDIDATES': tmp_path / 'candidates', 'EMPTY': tmp_path / 'empty', 'BROKEN': tmp_path / 'broken'}
    for folder in folders.values():
        folder.mkdir()
    write_png(folders['CANDIDATES'] / 'coffee.png', rgb('coffee'))
    (folders['BROKEN'] / 'broken.png').write_bytes(b'\x89PNG broken')
    arguments = [str(folders.get(argument, argument)) for argument in arguments]
    code = frfsr_cli.main(['infer', '--opt', loud_checkpoints['stage1'], '--weights', loud_checkpoints['net1'], '--lr',
                           lr_path, '--ref', lr_path, '-o', str(tmp_path / 'sr.png')] + arguments)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and message in err[-1] and err[-1].startswith('frfsr infer: error:')
