"""The start-up check in common/__init__.py: a torch older than 2.5 or Windows stops every entry
point with one ``error:`` line on stderr and exit status 2, before anything deeper fails."""
import os
import subprocess
import sys

import pytest

import common
from common import startup_problem, torch_release, torch_too_old

pytestmark = pytest.mark.e2e  # runs the project's commands: the full suite, not the unit tier

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("version, release", [
    ("2.4.1+cpu", (2, 4)), ("2.5.0a0+git1234", (2, 5)), ("2.13.0", (2, 13)), ("2.5.1", (2, 5)),
    ("1.13.1+cu117", (1, 13)), ("2.1.0.post4", (2, 1)), ("10.0", (10, 0)), ("garbage", None),
    ("", None)])
def test_torch_release(version, release):
    assert torch_release(version) == release


@pytest.mark.parametrize("version, too_old", [
    ("2.4.1+cpu", True), ("2.4.1", True), ("1.13.1", True), ("2.1.0.post4", True),
    ("2.5.0a0+git1234", False), ("2.5.0", False), ("2.13.0", False), ("2.13.0+cpu", False),
    ("3.0.0", False), ("garbage", False)])
def test_torch_too_old(version, too_old):
    assert torch_too_old(version) is too_old


def test_startup_problem():
    assert startup_problem("linux", "2.13.0") is None
    assert startup_problem("darwin", "2.5.0") is None
    assert startup_problem("linux", None) is None  # torch absent: its own import error
    old = startup_problem("linux", "2.4.1+cpu")
    assert old.startswith("error: torch 2.4.1+cpu is older than 2.5") and "torch>=2.5" in old
    assert startup_problem("win32", "2.13.0").endswith("on Windows use WSL2")
    assert common.OLDEST_TORCH == (2, 5)


def run_entry_point(fake, script="BiSeNetV1/train.py"):
    """``script --help`` from the repo root in a fresh interpreter, after ``fake`` ran (torch is
    imported first, as the entry point would, so faking sys.platform cannot break torch)."""
    code = (f"import runpy, sys, torch; {fake}; sys.argv = [{script!r}, '--help']; "
            f"runpy.run_path({script!r}, run_name='__main__')")
    env = {k: v for k, v in os.environ.items() if k != "SEGZOO_DEBUG"}
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)


def assert_one_line_error(proc, *words):
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    assert "Traceback" not in proc.stderr and "usage" not in proc.stdout
    for word in words:
        assert word in lines[0], lines[0]


def test_entry_point_runs_with_this_torch():
    proc = run_entry_point("pass")
    assert proc.returncode == 0 and "usage" in proc.stdout, proc.stderr


@pytest.mark.parametrize("version", ["2.4.1", "2.4.1+cpu", "1.13.1"])
def test_old_torch_is_one_line_error(version):
    proc = run_entry_point(f"torch.__version__ = {version!r}")
    assert_one_line_error(proc, f"torch {version} is older than 2.5", "torch>=2.5",
                          "torch_npu")


def test_old_torch_stops_other_entry_points_too():
    proc = run_entry_point("torch.__version__ = '2.4.1'", "BiSeNetV2/train.py")
    assert_one_line_error(proc, "older than 2.5")


def test_windows_is_one_line_error():
    # as on Windows: sys.platform, and no fcntl (common.training imports it)
    proc = run_entry_point("sys.platform = 'win32'; sys.modules['fcntl'] = None")
    assert_one_line_error(proc, "supports Linux", "WSL2")
