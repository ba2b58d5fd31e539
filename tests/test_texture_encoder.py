"""Contrastive texture-encoder training: homography pairs, triplet / distillation losses against direct loop
formulas, matching accuracy, VGG16 initialisation, and the teacher -> student chain through ``basicsr train`` on
demo photos (the student must match held-out pairs better than the untrained encoder)."""
import copy
import glob
import importlib.util
import re
import subprocess
import sys
from os import path as osp

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from helpers import encoder_options, latest_weights, write_yaml
from skimage import data as skimage_data
from torchvision.models.vgg import cfgs, make_layers

from frfsr_plugin.archs.contrastive_encoder_arch import FRFSRContrastiveEncoder
from frfsr_plugin.cli.demo_data import build_cufed5_like_set, build_train_set, write_rgb
from frfsr_plugin.cli.option_checks import check_registered_types
from frfsr_plugin.data.contrastive_dataset import ContrastiveHomographyDataset, warp_with_homography
from frfsr_plugin.data.transforms import make_lr_pair
from frfsr_plugin.losses.contrastive_loss import TextureDistillationLoss, TextureTripletLoss
from frfsr_plugin.metrics.matching_accuracy import calculate_matching_accuracy, matching_accuracy
from frfsr_plugin.utils.checkpoint import PretrainedWeightsError
from frfsr_plugin.utils.errors import MissingOptionError, OptionError

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

# ---------------------------------------------------------------------------------------------------------- data


@pytest.fixture(scope='module')
def smooth_photo_folder(tmp_path_factory):
    """One blurred 160x160 photo, so that bilinear re-sampling errors stay small."""
    folder = tmp_path_factory.mktemp('smooth')
    photo = cv2.resize(skimage_data.astronaut(), (160, 160), interpolation=cv2.INTER_AREA)
    write_rgb(str(folder / 'astronaut.png'), cv2.GaussianBlur(photo, (0, 0), 3))
    return str(folder)


def homography_dataset(folder, phase='val', **opt):
    return ContrastiveHomographyDataset({'dataroot_in': folder, 'phase': phase, 'gt_size': 160, **opt})


def to_uint8(tensor):
    return (tensor.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def test_translation_maps_points_and_pixels_exactly():
    img = np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    warped, gt_map = warp_with_homography(img, np.array([[1., 0, 5], [0, 1, -3], [0, 0, 1]]))
    grid_y, grid_x = np.mgrid[:40, :48]
    assert np.array_equal(gt_map[0], grid_x + 5) and np.array_equal(gt_map[1], grid_y - 3)
    assert np.array_equal(warped[0:37, 5:48], img[3:40, 0:43])  # image-1 pixel (x, y) is at (x + 5, y - 3)
    assert not warped[37:].any() and not warped[:, :5].any()


def test_zero_corner_shift_gives_the_identity(smooth_photo_folder):
    sample = homography_dataset(smooth_photo_folder, max_corner_shift=0)[0]
    grid_y, grid_x = torch.meshgrid(torch.arange(160.), torch.arange(160.), indexing='ij')
    assert torch.allclose(sample['gt_map'], torch.stack([grid_x, grid_y]), atol=1e-3)
    assert torch.equal(sample['img2'], sample['img1'])


def resample(img, gt_map):
    """Bilinear samples of img (3, H, W) at the (x, y) pixel positions of gt_map (2, H, W)."""
    height, width = img.shape[-2:]
    grid = torch.stack([gt_map[0] / (width - 1), gt_map[1] / (height - 1)], dim=-1) * 2 - 1
    return F.grid_sample(img[None], grid[None], mode='bilinear', align_corners=True)[0]


def test_gt_map_agrees_with_the_warp_on_a_smooth_photo(smooth_photo_folder):
    """Image 2 sampled at the GT positions reproduces image 1 within interpolation error; a 2-pixel shift does not."""
    for index_seed in range(3):
        sample = homography_dataset(smooth_photo_folder, homography_seed=index_seed)[0]
        gt_map, img1, img2 = sample['gt_map'], sample['img1'], sample['img2']
        inside = ((gt_map > 2) & (gt_map < 157)).all(dim=0)
        inside[:2], inside[-2:], inside[:, :2], inside[:, -2:] = False, False, False, False
        assert inside.float().mean() > 0.6
        error = (resample(img2, gt_map) - img1).abs().mean(dim=0)[inside] * 255
        shifted_error = (resample(img2, gt_map + 2) - img1).abs().mean(dim=0)[inside] * 255
        assert error.mean() < 0.6 and error.max() < 5  # grey levels of 255
        assert shifted_error.mean() > 10 * error.mean()


def test_samples_keys_lr_up_and_determinism(smooth_photo_folder):
    val = homography_dataset(smooth_photo_folder, homography_seed=3)
    sample = val[0]
    assert [tuple(sample[key].shape)
            for key in ('img1', 'img1_lr_up', 'img2', 'gt_map')] == [(3, 160, 160)] * 3 + [(2, 160, 160)]
    assert sample['img1_path'].endswith('astronaut.png')
    _, lr_up = make_lr_pair(to_uint8(sample['img1']), 4)
    assert torch.equal(sample['img1_lr_up'], torch.from_numpy(lr_up.copy()).permute(2, 0, 1).float() / 255)
    assert torch.equal(homography_dataset(smooth_photo_folder, homography_seed=3)[0]['gt_map'], sample['gt_map'])
    assert not torch.equal(homography_dataset(smooth_photo_folder, homography_seed=4)[0]['gt_map'], sample['gt_map'])
    train = homography_dataset(smooth_photo_folder, phase='train')
    np.random.seed(0)
    first = train[0]
    assert not torch.equal(train[0]['gt_map'], first['gt_map'])
    np.random.seed(0)
    assert torch.equal(train[0]['img2'], first['img2'])  # numpy's global state (BasicSR's worker seeding) decides


def test_dataset_option_errors(tmp_path, smooth_photo_folder):
    with pytest.raises(MissingOptionError, match='dataroot_in'):
        ContrastiveHomographyDataset({'phase': 'train'})
    with pytest.raises(OptionError, match='gt_size'):
        homography_dataset(smooth_photo_folder, gt_size=90)
    with pytest.raises(OptionError, match='max_corner_shift'):
        homography_dataset(smooth_photo_folder, max_corner_shift=-1)
    with pytest.raises(FileNotFoundError, match='does not exist'):
        homography_dataset(str(tmp_path / 'missing'))


# ------------------------------------------------------------------------------------------- losses and metric


def reference_correspondences(gt_map, feat_size, border):
    """[((y1, x1), (y2, x2))] by a loop over the feature grid (spec 2.2)."""
    height, width = gt_map.shape[-2:]
    stride = height // feat_size[0]
    pairs = []
    for y in range(feat_size[0]):
        for x in range(feat_size[1]):
            mapped_x, mapped_y = (float(v) for v in gt_map[:, y * stride, x * stride])
            if border < mapped_x < width - border and border < mapped_y < height - border:
                pairs.append(((y, x), (round(mapped_y / stride), round(mapped_x / stride))))
    return pairs


def distance(u, v):
    return 2 - 2 * torch.dot(u / u.norm(), v / v.norm())


def chebyshev(p, q):
    return max(abs(p[0] - q[0]), abs(p[1] - q[1]))


def reference_triplet(feat1, feat2, gt_map, margin, radius, border, min_correspondences):
    pair_losses = []
    for f1, f2, pair_map in zip(feat1, feat2, gt_map):
        pairs = reference_correspondences(pair_map, f1.shape[-2:], border)
        if len(pairs) < min_correspondences:
            continue
        grid = [(y, x) for y in range(f1.shape[1]) for x in range(f1.shape[2])]
        terms = []
        for p1, p2 in pairs:
            anchor, positive = f1[:, p1[0], p1[1]], f2[:, p2[0], p2[1]]
            negative2 = min(distance(anchor, f2[:, q2[0], q2[1]]) for _, q2 in pairs if chebyshev(p2, q2) > radius)
            negative1 = min(distance(positive, f1[:, q[0], q[1]]) for q in grid if chebyshev(p1, q) > radius)
            terms.append(F.relu(margin + distance(anchor, positive) - min(negative1, negative2)))
        pair_losses.append(sum(terms) / len(terms))
    return sum(pair_losses) / len(pair_losses)


def reference_distillation(student1, student2, teacher1, teacher2, gt_map, weight, temperature, border,
                           min_correspondences):
    pair_losses = []
    for s1, s2, t1, t2, pair_map in zip(student1, student2, teacher1, teacher2, gt_map):
        pairs = reference_correspondences(pair_map, s1.shape[-2:], border)
        if len(pairs) < min_correspondences:
            continue
        kl_rows = []
        for p1, _ in pairs:
            student_logits = torch.stack([(2 - distance(s1[:, p1[0], p1[1]], s2[:, q[0], q[1]])) / 2
                                          for _, q in pairs]) / temperature
            teacher_logits = torch.stack([(2 - distance(t1[:, p1[0], p1[1]], t2[:, q[0], q[1]])) / 2
                                          for _, q in pairs]) / temperature
            teacher_probs = teacher_logits.exp() / teacher_logits.exp().sum()
            student_log_probs = student_logits - student_logits.exp().sum().log()
            kl_rows.append((teacher_probs * (teacher_probs.log() - student_log_probs)).sum())
        pair_losses.append(sum(kl_rows) / len(pairs))
    return weight * sum(pair_losses) / len(pair_losses)


def toy_gt_maps(size=40, feat_stride=4):
    """Three pairs' maps: a shifted, perturbed grid; one mapping mostly outside; one entirely outside."""
    generator = torch.Generator().manual_seed(1)
    grid_y, grid_x = torch.meshgrid(
        torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64), indexing='ij')
    grid = torch.stack([grid_x, grid_y])
    noise = torch.rand(3, 2, size, size, generator=generator, dtype=torch.float64) * 6 - 3
    shifts = torch.tensor([[2.3, -1.7], [size - 4., 3.1], [-size, 0.]], dtype=torch.float64)
    return grid + noise + shifts[:, :, None, None]


def test_triplet_loss_equals_direct_loops():
    gt_map = toy_gt_maps()
    feat1 = torch.randn(3, 6, 10, 10, dtype=torch.float64, requires_grad=True)
    feat2 = torch.randn(3, 6, 10, 10, dtype=torch.float64, requires_grad=True)
    options = dict(margin=1.0, safe_radius=2, border=2, min_correspondences=12)
    valid_counts = [len(reference_correspondences(m, (10, 10), 2)) for m in gt_map]
    assert valid_counts[0] >= 12 and 0 < valid_counts[1] < 12 and valid_counts[2] == 0  # one pair used, two skipped
    loss = TextureTripletLoss(**options)(feat1, feat2, gt_map)
    expected = reference_triplet(feat1, feat2, gt_map, 1.0, 2, 2, 12)
    assert torch.allclose(loss, expected, rtol=1e-10)
    grads = torch.autograd.grad(loss, (feat1, feat2))
    expected_grads = torch.autograd.grad(expected, (feat1, feat2))
    assert all(torch.allclose(g, e, atol=1e-10) for g, e in zip(grads, expected_grads))
    options['min_correspondences'] = 1  # now the second pair counts too
    both = TextureTripletLoss(loss_weight=2.0, **options)(feat1, feat2, gt_map)
    assert torch.allclose(both, 2 * reference_triplet(feat1, feat2, gt_map, 1.0, 2, 2, 1), rtol=1e-10)


def test_distillation_loss_equals_direct_loops():
    gt_map = toy_gt_maps()
    student1, student2 = (torch.randn(3, 6, 10, 10, dtype=torch.float64, requires_grad=True) for _ in range(2))
    teacher1, teacher2 = (torch.randn(3, 5, 10, 10, dtype=torch.float64, requires_grad=True) for _ in range(2))
    loss = TextureDistillationLoss(border=2, min_correspondences=1)(student1, student2, teacher1, teacher2, gt_map)
    expected = reference_distillation(student1, student2, teacher1, teacher2, gt_map, 15.0, 0.15, 2, 1)
    assert torch.allclose(loss, expected, rtol=1e-10)
    loss.backward()
    assert teacher1.grad is None and teacher2.grad is None and student1.grad.abs().sum() > 0
    same = TextureDistillationLoss(border=2, min_correspondences=1)(teacher1, teacher2, teacher1, teacher2, gt_map)
    assert abs(same.item()) < 1e-12  # KL of a distribution with itself


def test_batch_without_enough_correspondences_gives_a_connected_zero():
    feat1, feat2 = torch.randn(1, 4, 10, 10, requires_grad=True), torch.randn(1, 4, 10, 10, requires_grad=True)
    gt_map = toy_gt_maps()[2:].float()
    for loss in (TextureTripletLoss()(feat1, feat2, gt_map), TextureDistillationLoss()(feat1, feat2, feat1, feat2,
                                                                                       gt_map)):
        loss.backward()
        assert loss.item() == 0 and feat1.grad is not None and feat2.grad is not None


def reference_accuracy(feat1, feat2, pair_map, tolerance, border):
    pairs = reference_correspondences(pair_map, feat1.shape[-2:], border)
    grid = [(y, x) for y in range(feat2.shape[1]) for x in range(feat2.shape[2])]
    correct = 0
    for p1, p2 in pairs:
        similarities = [-distance(feat1[:, p1[0], p1[1]], feat2[:, q[0], q[1]]) for q in grid]
        best = grid[int(torch.stack(similarities).argmax())]
        correct += chebyshev(best, p2) <= tolerance
    return correct / len(pairs)


def test_matching_accuracy_equals_direct_loops_and_is_one_for_exact_features():
    gt_map = toy_gt_maps()[:2]
    feat1, feat2 = torch.randn(2, 8, 10, 10, dtype=torch.float64), torch.randn(2, 8, 10, 10, dtype=torch.float64)
    feat2[0, :, 3:8, 3:8] = feat1[0, :, 2:7, 2:7]  # a few correct matches in the first pair
    accuracy = matching_accuracy(feat1, feat2, gt_map, tolerance=1, border=2)
    expected = [reference_accuracy(f1, f2, m, 1, 2) for f1, f2, m in zip(feat1, feat2, gt_map)]
    assert accuracy.tolist() == pytest.approx(expected) and expected[0] > 0
    # Features that are an exact 2-pixel translation of each other, with the matching integer GT map.
    grid_y, grid_x = torch.meshgrid(torch.arange(40.), torch.arange(40.), indexing='ij')
    translation_map = torch.stack([grid_x + 8, grid_y + 8])[None]
    shifted = torch.randn(1, 8, 10, 10)
    original = shifted.roll(shifts=(-2, -2), dims=(2, 3))
    assert matching_accuracy(original, shifted, translation_map, border=2).item() == 1.0
    assert calculate_matching_accuracy(original, shifted, translation_map, border=2, better='higher') == 1.0
    assert torch.isnan(matching_accuracy(original, shifted, translation_map + 100)).all()


# ------------------------------------------------------------------------------------------------ architecture


def test_random_init_is_torchvision_vgg_init_with_identical_unshared_branches():
    encoder = FRFSRContrastiveEncoder(pretrained=False)
    for conv in (m for m in encoder.feature_extraction_image1.modules() if isinstance(m, torch.nn.Conv2d)):
        fan_out = conv.out_channels * 9
        assert abs(conv.weight.std().item() / (2 / fan_out)**0.5 - 1) < 0.05 and not conv.bias.any()
    branch1, branch2 = (
        dict(branch.named_parameters())
        for branch in (encoder.feature_extraction_image1, encoder.feature_extraction_image2))
    assert branch1.keys() == branch2.keys() and all(torch.equal(branch1[k], branch2[k]) for k in branch1)
    with torch.no_grad():
        branch1['model.conv1_1.weight'].add_(1.0)  # separate tensors: the branches train apart
    assert not torch.equal(branch1['model.conv1_1.weight'], branch2['model.conv1_1.weight'])


def test_encoder_initialises_both_branches_from_torchvision_vgg16(tmp_path):
    vgg16_features = make_layers(cfgs['D'])[:12]  # torchvision's VGG16 `features`, up to relu3_1
    path = str(tmp_path / 'vgg16-397923af.pth')
    torch.save({f'features.{key}': value for key, value in vgg16_features.state_dict().items()}, path)
    encoder = FRFSRContrastiveEncoder(vgg16_pretrained=path)
    img = torch.rand(2, 3, 32, 32)
    normalized = (img - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225
                                                                                              ]).view(1, 3, 1, 1)
    expected = vgg16_features[:11](normalized)  # conv3_1, before its ReLU
    with torch.no_grad():
        assert all(torch.allclose(feat, expected, atol=1e-5) for feat in encoder(img, img))
    with pytest.raises(PretrainedWeightsError, match=r'vgg16-397923af.pth.*not found.*VGG16 ImageNet'):
        FRFSRContrastiveEncoder(vgg16_pretrained=str(tmp_path / 'missing' / 'vgg16-397923af.pth'))
    with pytest.raises(OptionError, match='either `pretrained`.*or `vgg16_pretrained`'):
        FRFSRContrastiveEncoder(pretrained=path, vgg16_pretrained=path)
    torch.save({'features.0.weight': torch.zeros(64, 3, 3, 3)}, path)
    with pytest.raises(PretrainedWeightsError, match='missing keys'):
        FRFSRContrastiveEncoder(vgg16_pretrained=path)


# ------------------------------------------------------------------------------------------ options and training


@pytest.mark.parametrize('yaml_name, model_type, total_iter, milestones', [
    ('texture_encoder_teacher.yml', 'TextureEncoderTeacherModel', 5000, []),
    ('texture_encoder_student.yml', 'TextureEncoderStudentModel', 75000, [72545]),
])
def test_full_size_options_follow_the_recipe(yaml_name, model_type, total_iter, milestones):
    opt_path = osp.join(ROOT, 'options', yaml_name)
    with open(opt_path) as file:
        opt = yaml.safe_load(file)
    check_registered_types(opt, opt_path)
    train = opt['train']
    assert opt['model_type'] == model_type and opt['datasets']['train']['batch_size_per_gpu'] == 8
    assert opt['datasets']['train']['gt_size'] == 160 and opt['network_g']['vgg16_pretrained'].endswith(
        'vgg16-397923af.pth')
    assert (train['optim_g']['lr'], train['total_iter'], train['scheduler']['milestones']) == (1e-3, total_iter,
                                                                                               milestones)
    assert {
        k: train['triplet_opt'][k]
        for k in ('margin', 'safe_radius', 'border', 'min_correspondences')
    } == {
        'margin': 1.0,
        'safe_radius': 4,
        'border': 10,
        'min_correspondences': 128
    }
    if model_type == 'TextureEncoderStudentModel':
        assert (train['distill_opt']['loss_weight'], train['distill_opt']['temperature']) == (15.0, 0.15)
        assert train['scheduler']['gamma'] == 0.1 and opt['path']['ignore_resume_networks'] == ['network_teacher']
        assert opt['val']['branch1_input'] == 'lr_up'


def build_training_model(opt):
    from basicsr.models import build_model
    return build_model(dict(copy.deepcopy(opt), is_train=True, dist=False, rank=0, world_size=1))


def test_models_reject_missing_teacher_and_bad_training_options(tmp_path):
    teacher = encoder_options('tiny_teacher', str(tmp_path))
    student = encoder_options(
        'tiny_student', str(tmp_path), teacher_weights=str(tmp_path / 'missing' / 'net_g_latest.pth'))
    with pytest.raises(PretrainedWeightsError, match=r'net_g_latest.pth.*not found'):
        build_training_model(student)
    student['path'].update(pretrain_network_g=None, pretrain_network_teacher=None)
    with pytest.raises(MissingOptionError, match='path.pretrain_network_teacher'):
        build_training_model(student)
    teacher['train']['ema_decay'] = 0.999
    with pytest.raises(OptionError, match='ema_decay'):
        build_training_model(teacher)
    del teacher['train']['ema_decay'], teacher['train']['triplet_opt']
    with pytest.raises(MissingOptionError, match='train.triplet_opt'):
        build_training_model(teacher)


def load_tool():
    spec = importlib.util.spec_from_file_location('matching_accuracy_tool',
                                                  osp.join(ROOT, 'tools', 'matching_accuracy.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def run_tool(capsys, *args):
    """``tools/matching_accuracy.py`` in this process: (exit code, {printed key: value}, stderr)."""
    code = load_tool().main(list(args))
    captured = capsys.readouterr()
    return code, dict(line.split(': ', 1) for line in captured.out.splitlines()), captured.err


@pytest.fixture(scope='module')
def encoder_chain(tmp_path_factory):
    """The demo chain through `basicsr train`: teacher (HR / warped HR) then student (LR-up / warped HR + KL)."""
    root = tmp_path_factory.mktemp('encoder_chain')
    build_train_set(str(root / 'data' / 'train'), 64, crops_per_photo=4)
    build_cufed5_like_set(str(root / 'data' / 'test'), groups_per_photo=2)  # held-out photos, 24 images
    teacher = encoder_options('tiny_teacher', str(root / 'data'))  # 100 teacher, 60 student iterations
    student = encoder_options('tiny_student', str(root / 'data'), teacher_weights=latest_weights(str(root), teacher))
    for opt in (teacher, student):
        opt['logger']['use_tb_logger'] = False
    results = []
    for opt in (teacher, student):
        results.append(
            subprocess.run([
                sys.executable, '-m', 'frfsr_plugin.cli.basicsr_cli', 'train', '-opt',
                write_yaml(str(root / f"{opt['name']}.yml"), opt)
            ],
                           cwd=root,
                           capture_output=True,
                           text=True,
                           timeout=900))
    return root, teacher, student, results


@pytest.mark.integration
def test_teacher_and_student_train_through_basicsr(encoder_chain):
    root, teacher, student, results = encoder_chain
    for opt, result, loss_terms in zip((teacher, student), results, (['l_triplet'], ['l_triplet', 'l_distill'])):
        assert result.returncode == 0, result.stderr[-3000:]
        log = open(glob.glob(str(root / 'experiments' / opt['name'] / f"train_{opt['name']}_*.log"))[0]).read()
        assert all(f'{term}: ' in log for term in loss_terms)
        assert re.search(r'# matching_acc: 0\.\d{4}\tBest: 0\.\d{4} @ \d+ iter', log)
    student_weights = latest_weights(str(root), student)
    encoder = FRFSRContrastiveEncoder(pretrained=student_weights)  # plugs into network_extractor.pretrained
    teacher_encoder = FRFSRContrastiveEncoder(pretrained=latest_weights(str(root), teacher))
    assert not torch.equal(encoder.feature_extraction_image1.model.conv1_1.weight,
                           teacher_encoder.feature_extraction_image1.model.conv1_1.weight)


@pytest.mark.integration
def test_student_matches_held_out_pairs_better_than_the_untrained_encoder(encoder_chain, capsys):
    root, _, student, results = encoder_chain
    assert results[1].returncode == 0, results[1].stderr[-3000:]
    common = ['--data', str(root / 'data' / 'test'), '--size', '64', '--border', '4', '--lr-up', '--seed', '0']
    code, untrained, _ = run_tool(capsys, '--weights', 'random', *common)
    assert code == 0 and untrained['pairs'] == '24'
    code, trained, _ = run_tool(capsys, '--weights', latest_weights(str(root), student), *common)
    assert code == 0
    untrained_accuracy, trained_accuracy = float(untrained['matching_accuracy']), float(trained['matching_accuracy'])
    print(f'held-out matching accuracy (LR-up, 24 pairs): untrained {untrained_accuracy:.4f}, '
          f'student {trained_accuracy:.4f}')
    # identical random branches already match; training must add to that: measured 0.5731 -> 0.6841
    assert trained_accuracy > untrained_accuracy + 0.05


def test_tool_reports_a_missing_checkpoint_in_one_line(tmp_path, capsys, smooth_photo_folder):
    code, _, err = run_tool(capsys, '--weights', str(tmp_path / 'net_g_latest.pth'), '--data', smooth_photo_folder)
    assert code == 1 and err.count('\n') == 1 and 'net_g_latest.pth' in err and 'not found' in err
