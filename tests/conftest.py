"""Session fixtures shared by the test modules: the demo photos as CUFED-like data, and tiny random checkpoints with
their ``basicsr test`` YAMLs (``tests/configs/``).

Tiers: tests marked ``integration`` spawn child processes or run whole pipelines (``basicsr train|test``,
``frfsr infer``, the tools, many training steps); ``python -m pytest -m "not integration"`` runs the rest.
"""
import pytest
import torch

import frfsr_plugin  # noqa: F401  (compat alias and registries before any basicsr import in the tests)

# isort: split
from basicsr.archs import build_network
from helpers import (make_loud, tiny_stage2_options, tiny_stage2_test_options, tiny_test_options, tiny_train_options,
                     write_yaml)

from frfsr_plugin.cli.demo_data import build_cufed5_like_set, build_train_set

DEMO_GT_SIZE = 64


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope='session')
def demo_data(tmp_path_factory):
    """Folder with ``train/`` (CUFED-like: 2 crops of 64 pixels from each of 7 photos, with references) and ``test/``
    (CUFED5-like: 2 groups of a GT and references of similarity levels 1 to 5). Read-only for the tests."""
    root = tmp_path_factory.mktemp('demo_data')
    build_train_set(str(root / 'train'), DEMO_GT_SIZE, crops_per_photo=2)
    build_cufed5_like_set(str(root / 'test'), groups_per_photo=1)
    return str(root)


@pytest.fixture(scope='session')
def tiny_checkpoints(demo_data, tmp_path_factory):
    """Random tiny checkpoints and their test YAMLs on the demo data.

    Returns:
        dict[str, str]: ``stage1`` (FRFSRNet, seed 1) and ``stage1_yml``; ``stage2`` (FRFSRStage2Net: the stage-1
        weights plus random fusion convs, seed 2) and ``stage2_yml`` (Net1 = ``stage1``).
    """
    root = tmp_path_factory.mktemp('tiny_checkpoints')
    paths = {'stage1': str(root / 'net_g_stage1.pth'), 'stage2': str(root / 'net_g_stage2.pth')}
    torch.manual_seed(1)
    net1 = build_network(tiny_train_options(demo_data, 1)['network_g'])
    torch.save({'params': net1.state_dict()}, paths['stage1'])
    torch.manual_seed(2)
    net2 = build_network(tiny_stage2_options(demo_data, 1, paths['stage1'])['network_g'])
    net2.load_state_dict(net1.state_dict(), strict=False)
    torch.save({'params': net2.state_dict()}, paths['stage2'])
    paths['stage1_yml'] = write_yaml(root / 'test_stage1.yml', tiny_test_options(demo_data, paths['stage1']))
    paths['stage2_yml'] = write_yaml(root / 'test_stage2.yml',
                                     tiny_stage2_test_options(demo_data, paths['stage2'], paths['stage1']))
    return paths


@pytest.fixture(scope='session')
def loud_checkpoints(tmp_path_factory):
    """YAMLs and loud random checkpoints (``helpers.make_loud``) of a tiny stage-1 model (``net1``, ``stage1``) and a
    two-stage model (``net2``, ``stage2``: Net1 = net1, Net2 = net2), on no data; seeded, so the same whichever test
    builds them first."""
    root = tmp_path_factory.mktemp('loud_checkpoints')
    torch.manual_seed(0)
    paths = {name: str(root / f'{name}.pth') for name in ('net1', 'net2')}
    stage1_opt = tiny_test_options(str(root), paths['net1'])
    stage2_opt = tiny_stage2_test_options(str(root), paths['net2'], paths['net1'])
    for name, net_opt in (('net1', stage1_opt['network_g']), ('net2', stage2_opt['network_g'])):
        torch.save({'params': make_loud(build_network(net_opt)).state_dict()}, paths[name])
    paths.update(stage1=write_yaml(root / 'stage1.yml', stage1_opt), stage2=write_yaml(root / 'stage2.yml', stage2_opt))
    return paths
