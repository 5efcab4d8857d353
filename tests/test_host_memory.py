"""The host-memory policy: applied on glibc (freed memory stays in the process), off with
SEGZOO_MALLOC=system, and named in every run's log."""
import os
import platform
import subprocess
import sys

import pytest

from conftest import REPO

PROBE = """
import ctypes, sys
sys.path.insert(0, {repo!r})
from common.host_memory import keep_freed_memory
print(keep_freed_memory())
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
import torch
x = torch.empty(64 * 2 ** 20, dtype=torch.uint8)  # above any mmap threshold
x.fill_(1)
print("mmapped", libc.mallinfo2().hblkhd >= 64 * 2 ** 20)
del x
print("kept", libc.mallinfo2().fordblks >= 64 * 2 ** 20)
"""


def probe(**env):
    out = subprocess.run([sys.executable, "-c", PROBE.format(repo=REPO)], capture_output=True,
                         text=True, env={**os.environ, **env}, timeout=120, check=True)
    return out.stdout.splitlines()


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the policy is glibc's mallopt")
def test_freed_memory_is_kept_and_the_switch_turns_it_off():
    phrase, mmapped, kept = probe()
    assert phrase.startswith("freed memory kept for reuse")
    assert (mmapped, kept) == ("mmapped False", "kept True")  # from the heap, and kept there
    phrase, mmapped, kept = probe(SEGZOO_MALLOC="system")
    assert phrase.startswith("system malloc settings")
    assert (mmapped, kept) == ("mmapped True", "kept False")  # glibc's default: mapped, returned
