"""Retaining freed CPU memory (utils/cpu_allocator.py): large tensors stop page-faulting after the first one."""
import json
import os
import subprocess
import sys

import pytest

PAGE_FAULTS = '''
import json, resource, sys
import torch
from frfsr_plugin.utils.cpu_allocator import retain_freed_cpu_memory
applied = retain_freed_cpu_memory() if sys.argv[1] == 'retain' else False
for _ in range(2):  # 64 MiB tensors, above glibc's largest mmap threshold
    torch.ones(64, 2**18).sum()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    torch.ones(64, 2**18).sum()
print(json.dumps({'applied': applied, 'faults': resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
'''

pytestmark = pytest.mark.integration


def page_faults(mode, **env):
    result = subprocess.run([sys.executable, '-c', PAGE_FAULTS, mode],
                            capture_output=True,
                            text=True,
                            check=True,
                            env=dict(os.environ, **env))
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='glibc mallopt')
def test_retained_memory_is_reused_without_page_faults():
    default = page_faults('default')
    retained = page_faults('retain')
    assert retained['applied']
    pages_per_tensor = 64 * 2**20 // os.sysconf('SC_PAGE_SIZE')
    assert default['faults'] >= 5 * pages_per_tensor // 2  # each new 64 MiB block is faulted in again
    assert retained['faults'] < pages_per_tensor // 10


def test_environment_variable_turns_it_off():
    result = page_faults('retain', FRFSR_RETAIN_CPU_MEMORY='0')
    assert not result['applied']
