"""The Cityscapes benchmark and mmseg 1.x checkpoints:

- ``--format-only`` writes one labelIds PNG per frame, named after the frame, for the val and
  the (unlabelled) test split, and the official evaluator (cityscapesscripts'
  ``evalPixelLevelSemanticLabeling``) gives the same per-class IoU as our evaluation;
- mmengine Runner checkpoints (``message_hub`` objects) load for eval-only, export, demo and
  --load-from, and a malicious pickle runs no code.
"""
import glob
import json
import os
import subprocess
import sys
import types

import numpy as np
import pytest
import torch
from PIL import Image

from common.checkpoint import load_file
from common.cityscapes import LABEL_ID_TO_TRAIN_ID
from conftest import FIXTURES, REPO, assert_user_error, run
from fixture_weights import fill_state_dict

pytestmark = pytest.mark.e2e  # runs the project's commands: the full suite, not the unit tier

TRAIN = os.path.join(REPO, "BiSeNetV1", "train.py")


@pytest.fixture(scope="module")
def r18_state():
    with open(os.path.join(FIXTURES, "BiSeNetV1_r18.json")) as f:
        return fill_state_dict(json.load(f)["state_dict"])


@pytest.fixture(scope="module")
def trained(tiny_config, synthetic_root, tmp_path_factory):
    """A short real training run of BiSeNetV1 R18 (so predictions have structure)."""
    work = tmp_path_factory.mktemp("trained")
    run(["python3", TRAIN, "--config", tiny_config, "--device", "cpu", "--work-dir", str(work),
         "--max_iters", "12", "--no-validate"])
    return work / "iter_12.pth"


def frames(root, split):
    return sorted(glob.glob(os.path.join(root, "leftImg8bit", split, "*", "*_leftImg8bit.png")))


def cityscapes_evaluation(dataset, results, export_dir):
    """cityscapesscripts' pixel-level evaluation of ``results`` against gtFine/val."""
    code = ("import json, cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling as e\n"
            "e.args.evalInstLevelScore = False\n"
            "e.args.quiet = True\n"
            "e.main()\n")
    env = {**os.environ, "CITYSCAPES_DATASET": dataset, "CITYSCAPES_RESULTS": results,
           "CITYSCAPES_EXPORT_DIR": str(export_dir)}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True,
                   timeout=600)
    with open(os.path.join(export_dir, "resultPixelLevelSemanticLabeling.json")) as f:
        return json.load(f)


def test_format_only_matches_the_official_evaluator(trained, tiny_config, synthetic_root,
                                                     tmp_path):
    pytest.importorskip("cityscapesscripts")
    out = tmp_path / "val_results"
    run(["python3", TRAIN, "--config", tiny_config, "--device", "cpu", "--work-dir",
         str(tmp_path / "w"), "--checkpoint", str(trained), "--format-only", "--format-dir",
         str(out)])
    val = frames(synthetic_root, "val")
    written = sorted(glob.glob(str(out / "*" / "*.png")))
    assert [os.path.relpath(p, out) for p in written] == \
        [os.path.relpath(p, os.path.join(synthetic_root, "leftImg8bit", "val")) for p in val]
    label_ids = np.array(Image.open(written[0]))
    assert label_ids.dtype == np.uint8 and set(np.unique(label_ids)) <= set(LABEL_ID_TO_TRAIN_ID)
    # our evaluation of the same checkpoint (its JSON goes next to the checkpoint)
    run(["python3", TRAIN, "--config", tiny_config, "--device", "cpu", "--work-dir",
         str(tmp_path / "w"), "--checkpoint", str(trained), "--eval-only"])
    ours = json.loads((trained.parent / "eval_iter_12_whole.json").read_text())
    official = cityscapes_evaluation(synthetic_root, str(out), tmp_path)
    compared = 0
    for row in ours["per_class"]:
        theirs = official["classScores"][row["class"]]
        if np.isnan(row["IoU"]):
            assert theirs is None or np.isnan(theirs), row
            continue
        assert row["IoU"] == pytest.approx(100 * theirs, abs=1e-6), row["class"]
        compared += 1
    assert compared >= 5
    assert ours["mIoU"] == pytest.approx(100 * official["averageScoreClasses"], abs=1e-6)


def test_format_only_on_the_test_split_and_from_the_eval_script(trained, tiny_config,
                                                                synthetic_root, tmp_path):
    run(["python3", TRAIN, "--config", tiny_config, "--device", "cpu", "--work-dir",
         str(tmp_path), "--checkpoint", str(trained), "--format-only", "--split", "test"])
    test = frames(synthetic_root, "test")
    written = sorted(glob.glob(str(tmp_path / "format_test" / "*" / "*.png")))
    assert len(test) == 5 and [os.path.basename(p) for p in written] == \
        [os.path.basename(p) for p in test]
    proc = run(["bash", "test/train_eval_1p.sh", f"--config={tiny_config}", "--device=cpu",
                f"--checkpoint={trained}", "--format_only", "--split=test"],
               cwd=os.path.join(REPO, "BiSeNetV1"))
    results = os.path.join(REPO, "BiSeNetV1", "test", "output", "0", "cityscapes_results")
    assert "Cityscapes submission (labelIds PNGs)" in proc.stdout
    assert sorted(os.listdir(results)) == ["berlin", "bielefeld"]


def mmengine_checkpoint(state, path, optimizer=None):
    """A checkpoint as mmengine's Runner writes it: meta, state_dict, optimizer,
    param_schedulers and a message_hub pickling mmengine objects (HistoryBuffer with numpy
    arrays). mmengine is not installed, so stand-in classes under its module names are
    pickled."""
    module = types.ModuleType("mmengine.logging.history_buffer")

    class HistoryBuffer:
        def __init__(self):
            self._log_history = np.arange(4.0)
            self._count_history = np.ones(4)
            self.max_length = 1000000

    HistoryBuffer.__module__, HistoryBuffer.__qualname__ = module.__name__, "HistoryBuffer"
    module.HistoryBuffer = HistoryBuffer
    for name in ("mmengine", "mmengine.logging"):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules[module.__name__] = module
    try:
        torch.save({"meta": {"epoch": 0, "iter": 40, "mmengine_version": "0.10.4"},
                    "state_dict": state,
                    "optimizer": optimizer or {"state": {}, "param_groups": []},
                    "param_schedulers": [{"eta_min": 1e-4, "power": 0.9}],
                    "message_hub": {"log_scalars": {"train/loss": HistoryBuffer()}}}, path)
    finally:
        del sys.modules[module.__name__]
    return path


def test_mmengine_runner_checkpoint_loads_everywhere(r18_state, tiny_config, synthetic_root,
                                                     tmp_path):
    path = mmengine_checkpoint(r18_state, tmp_path / "mm.pth")
    with pytest.raises(Exception):
        torch.load(path, weights_only=True)  # what a plain safe load says of such a file
    obj = load_file(str(path))
    assert obj["openmmlab_dropped"] == ["message_hub", "param_schedulers"]
    assert obj["meta"]["iter"] == 40 and set(obj["state_dict"]) == set(r18_state)
    bisenet = os.path.join(REPO, "BiSeNetV1")
    config = ["--config", tiny_config]
    proc = run(["python3", TRAIN, *config, "--device", "cpu", "--work-dir", str(tmp_path / "e"),
                "--checkpoint", str(path), "--eval-only"])
    assert "Iter(val)" in proc.stdout
    run(["python3", os.path.join(bisenet, "pth2onnx.py"), "--checkpoint", str(path), *config,
         "--output", str(tmp_path / "mm.onnx"), "--input-shape", "64", "128"])
    assert (tmp_path / "mm.onnx").is_file()
    image = frames(synthetic_root, "val")[0]
    run(["python3", os.path.join(bisenet, "demo.py"), image, "--checkpoint", str(path), *config,
         "--out-dir", str(tmp_path / "demo"), "--device", "cpu"])
    assert len(os.listdir(tmp_path / "demo")) == 4
    proc = run(["python3", TRAIN, *config, "--device", "cpu", "--work-dir", str(tmp_path / "f"),
                "--load-from", str(path), "--max_iters", "2", "--no-validate"])
    assert f"Loaded weights from {path}" in proc.stdout
    proc = run(["python3", TRAIN, *config, "--device", "cpu", "--work-dir", str(tmp_path / "g"),
                "--resume-from", str(path), "--max_iters", "42", "--no-validate"])
    assert f"Resumed from {path} at iteration 40" in proc.stdout
    assert "optimizer state does not fit this optimizer" in proc.stdout  # this one has no groups
    assert "Iter(train) [42/42]" in proc.stdout


class Exploit:
    """Pickles as ``os.system(command)``: loading it with plain pickle would run the command."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_a_malicious_checkpoint_runs_no_code(r18_state, tiny_config, tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"meta": {"iter": 1}, "state_dict": r18_state,
                "message_hub": Exploit(f"touch {marker}")}, path)
    proc = run(["python3", TRAIN, "--config", tiny_config, "--device", "cpu", "--work-dir",
                str(tmp_path / "w"), "--checkpoint", str(path), "--eval-only"], check=False)
    assert_user_error(proc, "holds Python objects beyond tensors", "system")
    assert not marker.exists()
    # an OpenMMLab-named global is replaced by an inert stand-in: nothing runs either
    mmengine = sys.modules.setdefault("mmengine", types.ModuleType("mmengine"))

    def hook(command):
        os.system(command)
    hook.__module__, hook.__qualname__ = "mmengine", "hook"
    mmengine.hook = hook

    class Trojan:
        def __reduce__(self):
            return hook, (f"touch {marker}",)
    try:
        torch.save({"meta": {"iter": 1}, "state_dict": r18_state, "message_hub": Trojan()},
                   tmp_path / "trojan.pth")
    finally:
        del mmengine.hook
    obj = load_file(str(tmp_path / "trojan.pth"))
    assert set(obj["state_dict"]) == set(r18_state) and not marker.exists()
