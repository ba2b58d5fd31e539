"""How the C library's allocator treats freed CPU memory: kept for reuse (fast) or handed back at once (bounded).

PyTorch allocates CPU tensors with the C library's ``malloc``. glibc serves blocks over its mmap threshold (at most
32 MiB) with fresh ``mmap`` calls and unmaps them on ``free``, so every full-resolution feature map of a RefSR network
(42 MiB at 64 channels for a 500x332 output) is new memory that the kernel page-faults in and zeroes. Net1 at CUFED5
size made 6.5 million page faults per forward and spent 15 of its 24 s in the kernel (2 cores). With mmap disabled
for large blocks and heap trimming deferred, freed blocks are reused: the same forward takes 14 s with 0.2 s in the
kernel, and the peak resident memory grows by about 6% (fragmentation of the retained heap).

``frfsr infer`` and ``basicsr test`` apply it unless a memory budget is set (``--max-memory-mb``); training keeps
the C library's defaults (2% faster with it, but a higher peak). ``FRFSR_RETAIN_CPU_MEMORY=0`` turns it off.

Under a memory budget the opposite is wanted: glibc's default mmap threshold is dynamic (freeing an mmapped block
raises it, up to 32 MiB), so after the first frees, blocks of a few MiB come from the heap, where freed ones stay
resident and fragment. The peak of one image then wandered by +-10% between identical runs and exceeded what its
tensors need by up to 50%. :func:`return_freed_cpu_memory` fixes the threshold at 128 KiB, so every block above it is
mapped on allocation and unmapped on free: resident memory follows the live tensors, and the peak repeats to 0.5 MB.
"""
import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD = -1  # glibc mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
M_MMAP_MAX = -4
MAX_TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int
DEFAULT_MMAP_MAX = 65536  # glibc's defaults
DEFAULT_THRESHOLD = 128 * 1024


def _set_malloc_options(options):
    """``mallopt(parameter, value)`` for each pair on Linux/glibc; False (nothing applied) elsewhere or on failure."""
    if not sys.platform.startswith('linux'):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6').mallopt
    except (OSError, AttributeError):
        return False
    return all([mallopt(parameter, value) == 1 for parameter, value in options])


def retain_freed_cpu_memory():
    """Make glibc keep freed memory for reuse (no mmap for large blocks, trimming only above 2 GiB of free top).

    Process-wide and irreversible; a no-op returning False off Linux/glibc or with ``FRFSR_RETAIN_CPU_MEMORY=0``.

    Returns:
        bool: Whether the setting was applied.
    """
    if os.environ.get('FRFSR_RETAIN_CPU_MEMORY', '1') == '0':
        return False
    return _set_malloc_options(((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, MAX_TRIM_THRESHOLD)))


def return_freed_cpu_memory():
    """Make glibc hand every freed block above 128 KiB back to the kernel at once (a fixed mmap threshold), so that
    resident memory follows the live tensors: what a memory budget (``restoration/memory.py``) is measured under.

    Fresh blocks must then be page-faulted in: a run under a budget is slower (``docs/design.md``).

    Process-wide; it undoes :func:`retain_freed_cpu_memory`. A no-op returning False off Linux/glibc.

    Returns:
        bool: Whether the setting was applied.
    """
    return _set_malloc_options(
        ((M_MMAP_MAX, DEFAULT_MMAP_MAX), (M_MMAP_THRESHOLD, DEFAULT_THRESHOLD), (M_TRIM_THRESHOLD, DEFAULT_THRESHOLD)))
