"""Shared test set-up: the repo on sys.path, an isolated synthetic-data cache, tiny configs,
and a helper that runs the project's commands as a user would."""
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(REPO, "tests")
FIXTURES = os.path.join(TESTS, "fixtures")
BISENETV1 = os.path.join(REPO, "BiSeNetV1")
BISENETV2 = os.path.join(REPO, "BiSeNetV2")
PSPNET = os.path.join(REPO, "PSPNet")
ICNET = os.path.join(REPO, "ICNet")
sys.path[:0] = [REPO, TESTS]

from BiSeNetV1.bisenetv1 import BiSeNetV1  # noqa: E402
from BiSeNetV2.bisenetv2 import BiSeNetV2  # noqa: E402
from ICNet.icnet import ICNet  # noqa: E402
from PSPNet.pspnet import PSPNet  # noqa: E402

# model directory -> its network class (default arguments: the reference configs)
NETWORKS = {"BiSeNetV1": BiSeNetV1, "BiSeNetV2": BiSeNetV2, "PSPNet": PSPNet, "ICNet": ICNet}

# model directory -> (synthetic smoke config, extra tiny-config YAML)
MODELS = {
    "BiSeNetV1": ("bisenetv1_r50-d32_synthetic-smoke.yaml", "model:\n  depth: 18\n"),
    "BiSeNetV2": ("bisenetv2_fcn_synthetic-smoke.yaml", ""),
    "PSPNet": ("pspnet_r50-d8_synthetic-voc-smoke.yaml", ""),
    "ICNet": ("icnet_r50-d8_synthetic-smoke.yaml", ""),
}

# Tiny recipe for end-to-end runs on 2 CPU cores: 64x64 crops, 2 images per device.
TINY_CONFIG = """
_base_: {base}
{extra}
data:
  crop_size: [64, 64]
  batch_size: 2
  num_workers: 0
schedule:
  max_iters: 6
  warmup_iters: 2
runtime:
  log_interval: 2
  eval_interval: 6
  checkpoint_interval: 3
  perf_warmup_iters: 2
  max_keep_ckpts: 0
"""


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory):
    """Synthetic datasets go to a per-session cache, also for subprocesses."""
    cache = str(tmp_path_factory.mktemp("segzoo_cache"))
    old = os.environ.get("SEGZOO_CACHE")
    os.environ["SEGZOO_CACHE"] = cache
    yield cache
    if old is None:
        os.environ.pop("SEGZOO_CACHE", None)
    else:
        os.environ["SEGZOO_CACHE"] = old


@pytest.fixture(scope="session")
def synthetic_root(isolated_cache):
    from common.tools.synthetic_cityscapes import ensure_synthetic_cityscapes
    return ensure_synthetic_cityscapes()


@pytest.fixture(scope="session")
def tiny_configs(tmp_path_factory):
    """model name -> a tiny config inheriting the model's smoke config."""
    folder = tmp_path_factory.mktemp("configs")
    paths = {}
    for model, (smoke, extra) in MODELS.items():
        path = folder / f"{model}_tiny.yaml"
        base = os.path.join(REPO, model, "configs", smoke)
        path.write_text(TINY_CONFIG.format(base=base, extra=extra))
        paths[model] = str(path)
    return paths


@pytest.fixture(scope="session")
def tiny_config(tiny_configs):
    return tiny_configs["BiSeNetV1"]


EMULATION = os.path.join(TESTS, "emulation")


def emulated_env(kind):
    """Environment for a subprocess that runs as an Ascend NPU (``npu``) or a CUDA GPU
    (``cuda``) would have it run, on this CPU (tests/emulation/emulate_device.py)."""
    return {"SEGZOO_EMULATE": kind,
            "PYTHONPATH": os.pathsep.join(filter(None, [EMULATION,
                                                        os.environ.get("PYTHONPATH")]))}


# CANN's set_env.sh appends without defaults and is not written for set -e (a failing test).
CANN_SET_ENV = """\
export LD_LIBRARY_PATH={root}/lib64:$LD_LIBRARY_PATH
export PYTHONPATH={root}/python/site-packages:$PYTHONPATH
export ASCEND_TOOLKIT_HOME={root}
test -d {root}/tools/ascend_custom_opp
echo "PYTHONPATH=$PYTHONPATH LD_LIBRARY_PATH=$LD_LIBRARY_PATH" >> {root}/sourced.txt
"""


def make_fake_cann(root):
    """A CANN install root holding a set_env.sh of CANN's shape (its python and lib folders do
    not exist, so python is unaffected); each sourcing appends a line to root/sourced.txt."""
    os.makedirs(os.path.join(root, "ascend-toolkit"), exist_ok=True)
    with open(os.path.join(root, "ascend-toolkit", "set_env.sh"), "w") as f:
        f.write(CANN_SET_ENV.format(root=root))
    return root


def fake_cann_env():
    """Environment for a launch script on a CANN machine after a fresh login: the session's
    fake CANN root, PYTHONPATH and LD_LIBRARY_PATH unset (None: removed by :func:`run`)."""
    root = os.path.join(os.environ["SEGZOO_CACHE"], "fake_cann")
    if not os.path.exists(os.path.join(root, "ascend-toolkit", "set_env.sh")):
        make_fake_cann(root)
    return {"ASCEND_CANN_ROOT": root, "PYTHONPATH": None, "LD_LIBRARY_PATH": None}


def cann_sourcings():
    """How many times a launch script has sourced the session's fake CANN set_env.sh."""
    marker = os.path.join(os.environ["SEGZOO_CACHE"], "fake_cann", "sourced.txt")
    if not os.path.exists(marker):
        return 0
    with open(marker) as f:
        return len(f.readlines())


def run(cmd, cwd=REPO, env=None, timeout=600, check=True):
    """Run a command; on an unexpected exit status show its output. ``env`` overrides the
    environment; a value of None removes the variable."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    full_env = {key: value for key, value in full_env.items() if value is not None}
    proc = subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} exited {proc.returncode}\nstdout:\n{proc.stdout[-4000:]}"
                             f"\nstderr:\n{proc.stderr[-4000:]}")
    return proc


def assert_user_error(proc, *fragments):
    """Exit 2 and exactly one 'error: ...' line on stderr mentioning every fragment."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    lines = [l for l in proc.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]
