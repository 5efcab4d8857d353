"""The library every model directory's scripts call; it never imports a model directory.

Runtime: ``device``, ``distributed``, ``amp``, ``stop_signals``, ``errors``, ``run_logger``.
Recipes and flags: ``config``, ``cli``. Data: ``cityscapes``, ``datasets``, ``data``,
``data_check``, ``transforms``, ``device_augment``, ``cache``. Networks: ``layers``, ``resnet``,
``pretrained``, ``segmentor``, ``fuse``. Training: ``training`` (run start, the loop object,
resume), ``losses``, ``lr_schedule``, ``checkpoint``. Evaluation and results: ``evaluation``,
``inference``, ``metrics``, ``visualize``, ``logfmt`` (the log-line format), ``result_log``
(the ModelZoo result log), ``tensorboard_log``. Export and demo: ``export``, ``demo``.
``common/tools/`` holds what training never imports (benchmarks, mmseg reference, synthetic
generators, converters, plotting).
"""
import os
import re
import sys

# The start-up check below runs when ``common`` is first imported, which every entry point does
# before any other common module (and so before torch APIs newer than 2.5 are touched or
# ``common.training`` imports ``fcntl``). It imports nothing heavy: torch's version is read
# from the imported module when there is one, otherwise from the installed package's metadata.

OLDEST_TORCH = (2, 5)


def torch_release(version):
    """``torch.__version__`` -> ``(major, minor)``: ``'2.4.1+cpu'`` -> ``(2, 4)``,
    ``'2.5.0a0+git1234'`` -> ``(2, 5)`` (a 2.5 pre-release or vendor build, as NVIDIA's and
    some Ascend images ship, counts as 2.5), ``'2.13.0'`` -> ``(2, 13)``; None when the string
    does not start with ``MAJOR.MINOR`` (then nothing is refused)."""
    match = re.match(r"\s*v?(\d+)\.(\d+)", str(version))
    return (int(match[1]), int(match[2])) if match else None


def torch_too_old(version):
    """Whether ``version`` (a ``torch.__version__`` string) is below :data:`OLDEST_TORCH`."""
    release = torch_release(version)
    return release is not None and release < OLDEST_TORCH


def startup_problem(platform, torch_version):
    """The one-line error that stops this project before it starts, or None: Windows (no
    ``fcntl``; the launch scripts are bash) or a torch older than 2.5 (``torch_version`` None:
    torch not installed, left to its own import error)."""
    if platform == "win32":
        return "error: this project supports Linux (and macOS on CPU); on Windows use WSL2"
    if torch_version is not None and torch_too_old(torch_version):
        oldest = ".".join(map(str, OLDEST_TORCH))
        return (f"error: torch {torch_version} is older than {oldest}, the oldest this project "
                f"supports; install torch>={oldest} (Ascend: the torch_npu release for your CANN)")
    return None


def _installed_torch_version():
    torch = sys.modules.get("torch")
    if torch is not None:
        return getattr(torch, "__version__", None)
    try:
        from importlib.metadata import version
        return version("torch")
    except Exception:  # not installed, or installed without metadata: nothing to check
        return None


def _check_startup():
    platform = "win32" if os.name == "nt" else sys.platform
    problem = startup_problem(platform, None if platform == "win32" else
                              _installed_torch_version())
    if problem is not None:
        print(problem, file=sys.stderr, flush=True)
        raise SystemExit(2)


_check_startup()
