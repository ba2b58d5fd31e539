"""The allocator settings of utils/cpu_allocator.py: retained freed memory stops large tensors page-faulting; under a
budget, freed blocks go back to the kernel at once, so resident memory follows the live tensors."""
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

RETURNED = '''
import json, os, sys
import torch
from frfsr_plugin.utils.cpu_allocator import retain_freed_cpu_memory, return_freed_cpu_memory
if sys.argv[1] == 'retain-then-return':
    retain_freed_cpu_memory()
applied = return_freed_cpu_memory() if sys.argv[1] != 'default' else False


def resident():
    with open('/proc/self/statm') as statm:
        return int(statm.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


torch.ones(2**22).sum()  # 16 MiB, mapped; freeing it raises glibc's default mmap threshold above 8 MiB
before = resident()
small = []
for _ in range(4):  # 8 MiB blocks, each freed with a small tensor allocated after it
    block = torch.ones(2**21)
    small.append(torch.ones(16))
    block.sum()
    del block
print(json.dumps({'applied': applied, 'resident_growth': resident() - before}))
'''

pytestmark = pytest.mark.integration


def run_child(mode, child=PAGE_FAULTS, **env):
    result = subprocess.run([sys.executable, '-c', child, mode],
                            capture_output=True,
                            text=True,
                            check=True,
                            env=dict(os.environ, **env))
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='glibc mallopt')
def test_retained_memory_is_reused_without_page_faults():
    default = run_child('default')
    retained = run_child('retain')
    assert retained['applied']
    pages_per_tensor = 64 * 2**20 // os.sysconf('SC_PAGE_SIZE')
    assert default['faults'] >= 5 * pages_per_tensor // 2  # each new 64 MiB block is faulted in again
    assert retained['faults'] < pages_per_tensor // 10


def test_environment_variable_turns_it_off():
    result = run_child('retain', FRFSR_RETAIN_CPU_MEMORY='0')
    assert not result['applied']


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='glibc mallopt')
def test_under_a_budget_freed_blocks_leave_the_process():
    default = run_child('default', RETURNED)
    assert default['resident_growth'] >= 6 * 2**20  # glibc's dynamic threshold kept a freed 8 MiB block resident
    for mode in ('return', 'retain-then-return'):
        returned = run_child(mode, RETURNED)
        assert returned['applied'] and returned['resident_growth'] < 2**20, (mode, returned)
