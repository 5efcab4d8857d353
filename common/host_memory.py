"""Host memory: keep freed memory in the process for reuse instead of returning it to the OS.

glibc's malloc serves blocks above its mmap threshold (32 MB at most) with fresh mappings and
hands them back on free, and trims freed memory at the top of the heap. A training step
allocates and frees the same large tensors every time (activations, casts of the weights to
bf16, their gradients), so each step page-faults them in again. With mmap off and trimming
off, the heap keeps what a step frees and the next step reuses it; the process holds its peak
usage (measured: 4% more peak RSS than without). On this project's 2-core AMD EPYC VM, ICNet's
bf16 training step at 256x256 crops, batch 2: 0.406 -> 0.385 s and 0.541 -> 0.467 s in two
alternating runs; mmseg's fp32 ICNet step in the same process: 0.66 -> 0.50 s (both sides of
``common.tools.bench_vs_mmseg`` run under it, so its ratios compare the code alone).
This is what jemalloc / tcmalloc preloading gives on CPU; glibc's own knobs need no extra
library. Elsewhere than glibc, or with ``SEGZOO_MALLOC=system``, nothing changes.
"""
import ctypes
import ctypes.util
import os
import platform

from common.device_caps import caps

# mallopt parameters (glibc's malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
NEVER_TRIM = 2 ** 31 - 1  # the largest int mallopt takes: trim only above 2 GiB free


def memory_policy_for(device_type):
    """The policy where the network runs on the host (measured there only); a GPU / NPU run,
    with 8 ranks and their loader workers, keeps the system's settings. Returns the phrase."""
    device = caps(device_type)
    if not device.host_tuning:
        return f"system malloc settings (the host-memory policy is for CPU runs, not {device.kind})"
    return keep_freed_memory()


def keep_freed_memory():
    """Apply the policy once for this process (and the workers it forks); returns a phrase
    for the run log saying what the process does."""
    if os.environ.get("SEGZOO_MALLOC", "") == "system":
        return "system malloc settings (SEGZOO_MALLOC=system)"
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return "system malloc settings (not glibc)"
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        applied = libc.mallopt(M_MMAP_MAX, 0) == 1 and libc.mallopt(M_TRIM_THRESHOLD,
                                                                    NEVER_TRIM) == 1
    except (OSError, AttributeError):
        applied = False
    if not applied:
        return "system malloc settings (mallopt refused)"
    return "freed memory kept for reuse (glibc mallopt; SEGZOO_MALLOC=system turns it off)"
