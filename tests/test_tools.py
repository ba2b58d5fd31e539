"""tools/count_params.py on the shipped YAMLs (the parameter counts the issues and README promise)."""
import subprocess
import sys
from os import path as osp

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

pytestmark = pytest.mark.integration


@pytest.mark.parametrize('yaml_name, expected', [
    ('frfsr_stage1.yml', [
        'network_extractor FRFSRContrastiveEncoder 1110656', 'network_map FRFSRCorrespondence 555328',
        'network_sife FRFSRSIFENet 16697987', 'network_g FRFSRNet 13487071'
    ]),
    ('frfsr_stage2.yml',
     ['network_stage1 FRFSRNet 13487071', 'network_g FRFSRStage2Net 13634655', 'network_d FRFSRDiscriminator 5242529']),
    ('c2matching_frf_stage2.yml',
     ['network_stage1 C2MatchingRestorationNet 8865547', 'network_g FeatureReuseNet 9086859']),
])
def test_count_params_prints_spec_counts(yaml_name, expected):
    result = subprocess.run(
        [sys.executable,
         osp.join(ROOT, 'tools', 'count_params.py'), '-opt',
         osp.join(ROOT, 'options', yaml_name)],
        capture_output=True,
        text=True,
        timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert all(line in lines for line in expected)
