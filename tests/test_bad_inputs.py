"""Bad input never costs data: bad flags, configs, environments, paths, damaged files and
interruptions go through the real command lines of every entry point (train.py, the launch
scripts, pth2onnx.py, demo.py, the converters, --check-data, the benchmark), one subprocess
each. Every case must end with a non-zero exit within a bounded time, no traceback, one
``error: ...`` line naming the problem, and every file of an earlier good run (work dir,
result log, export, demo pictures, converted labels, benchmark JSON, the model's configs)
byte-identical afterwards."""
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import BISENETV1, REPO, run

pytestmark = pytest.mark.e2e  # runs the project's commands: the full suite, not the unit tier

DEVICE_ID = "61"      # test/output/61: this module's launch-script runs
CASE_TIMEOUT = 120    # seconds; a case still running then is a hang
TRAIN = os.path.join(BISENETV1, "train.py")
EXPORT = os.path.join(BISENETV1, "pth2onnx.py")
DEMO = os.path.join(BISENETV1, "demo.py")
CITYSCAPES_CONVERTER = os.path.join(BISENETV1, "tools", "convert_datasets", "cityscapes.py")
DATASET_LIST = os.path.join(REPO, "BiSeNetV2", "tools", "data", "create_dataset_list.py")
VOC_CONVERTER = os.path.join(REPO, "PSPNet", "tools", "convert_datasets", "voc_aug.py")
BENCHMARK = [sys.executable, "-m", "common.tools.benchmark"]
SCRIPT_OUTPUT = os.path.join(BISENETV1, "test", "output", DEVICE_ID)


@dataclass
class Good:
    """The earlier good run every case must leave untouched."""
    root: str            # tmp folder holding the artefacts below
    config: str          # tiny BiSeNetV1 config
    data: str            # synthetic Cityscapes root
    work: str            # train.py work dir (checkpoints, latest, logs)
    checkpoint: str
    onnx: str
    demo_in: str         # two frames
    demo_out: str
    labels: str          # a small Cityscapes tree, converted
    bench_json: str
    snapshot: dict = field(default_factory=dict)
    backups: list = field(default_factory=list)


def tree_hashes(*roots):
    """{path: sha256} of every file under ``roots`` (files or folders)."""
    hashes = {}
    for root in roots:
        paths = [root] if os.path.isfile(root) else [
            os.path.join(d, f) for d, _, files in os.walk(root) for f in files]
        for path in paths:
            with open(path, "rb") as f:
                hashes[path] = hashlib.sha256(f.read()).hexdigest()
    return hashes


def protected_roots(good):
    return [good.root, SCRIPT_OUTPUT, os.path.join(BISENETV1, "configs")]


def protected(good):
    return tree_hashes(*protected_roots(good))


def restore(good):
    """Put the good run back after a case that changed it (so the next case starts clean)."""
    for root, saved in zip(protected_roots(good), good.backups):
        shutil.rmtree(root, ignore_errors=True)
        shutil.copytree(saved, root)


@pytest.fixture(scope="module")
def good(tiny_config, synthetic_root, tmp_path_factory):
    """One good run of every entry point: training, a launch script, export, demo, the
    converter and the benchmark."""
    root = tmp_path_factory.mktemp("good")
    g = Good(root=str(root), config=tiny_config, data=synthetic_root, work=str(root / "work"),
             checkpoint=str(root / "work" / "iter_2.pth"), onnx=str(root / "model.onnx"),
             demo_in=str(root / "frames"), demo_out=str(root / "demo"),
             labels=str(root / "cityscapes"), bench_json=str(root / "bench.json"))
    run([sys.executable, TRAIN, "--config", g.config, "--work-dir", g.work, "--device", "cpu",
         "--max_iters", "2", "--save_interval", "1", "--no-validate"])
    shutil.rmtree(SCRIPT_OUTPUT, ignore_errors=True)
    run(["bash", "test/train_performance_1p.sh", f"--config={g.config}", "--max_iters=3",
         f"--device_id={DEVICE_ID}", "--workers=0", "--device=cpu"], cwd=BISENETV1)
    run([sys.executable, EXPORT, "--checkpoint", g.checkpoint, "--output", g.onnx,
         "--input-shape", "64", "64"])
    frames = os.path.join(synthetic_root, "leftImg8bit", "val", "lindau")
    os.makedirs(g.demo_in)
    for name in sorted(os.listdir(frames))[:2]:
        shutil.copy(os.path.join(frames, name), g.demo_in)
    run([sys.executable, DEMO, g.demo_in, "--checkpoint", g.checkpoint, "--out-dir",
         g.demo_out, "--device", "cpu"])
    city = os.path.join(g.labels, "gtFine", "train", "aachen")
    os.makedirs(city)
    for i in range(2):
        Image.fromarray(np.full((8, 16), 7 + i, np.uint8)).save(
            os.path.join(city, f"aachen_{i:06d}_000019_gtFine_labelIds.png"))
    run([sys.executable, CITYSCAPES_CONVERTER, g.labels])
    run(BENCHMARK + ["--model", "BiSeNetV1", "--config", g.config, "--device", "cpu",
                     "--batch", "2", "--crop", "64", "64", "--infer-size", "64", "64",
                     "--iters", "1", "--warmup", "0", "--only", "infer", "--json",
                     g.bench_json])
    g.snapshot = protected(g)
    backup = tmp_path_factory.mktemp("good_backup")
    for i, root in enumerate(protected_roots(g)):
        g.backups.append(str(backup / str(i)))
        shutil.copytree(root, g.backups[-1])
    assert any(p.endswith(".log") for p in g.snapshot if p.startswith(SCRIPT_OUTPUT))
    yield g
    shutil.rmtree(SCRIPT_OUTPUT, ignore_errors=True)
    for suffix in (".prev", ".failed", ".running"):
        shutil.rmtree(SCRIPT_OUTPUT + suffix, ignore_errors=True)


# ---- the bad inputs ------------------------------------------------------------------------

def write(path, content, mode="w"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, mode) as f:
        f.write(content)
    return path


def train(g, *args):
    """train.py on the good run's work dir and data (so a case that wrote would show)."""
    return [sys.executable, TRAIN, "--config", g.config, "--work-dir", g.work, "--device",
            "cpu", "--max_iters", "3", *args]


def config_file(tmp, text, name="bad.yaml"):
    return write(os.path.join(tmp, name), text)


def tiny_with(g, tmp, extra):
    """A config inheriting the tiny one with ``extra`` YAML on top."""
    return config_file(tmp, f"_base_: {g.config}\n{extra}")


def script(*args):
    return ["bash", "test/train_performance_1p.sh", f"--device_id={DEVICE_ID}", "--max_iters=2",
            "--workers=0", "--device=cpu", *args]


def damaged_copy(src, tmp, name):
    """The first half of ``src``: a truncated download."""
    with open(src, "rb") as f:
        data = f.read()
    return write(os.path.join(tmp, name), data[:len(data) // 2], "wb")


def dataset_copy(g, tmp):
    """A copy of the synthetic dataset (symlinked files) that a case may break."""
    root = os.path.join(tmp, "cityscapes")
    shutil.copytree(g.data, root, copy_function=os.symlink)
    return root


def one_label(root, split="train"):
    folder = os.path.join(root, "gtFine", split)
    city = sorted(os.listdir(folder))[0]
    name = sorted(n for n in os.listdir(os.path.join(folder, city))
                  if n.endswith("_labelTrainIds.png"))[0]
    return os.path.join(folder, city, name)


def replace(path, make):
    os.unlink(path)
    make(path)


def converter_tree(tmp, array):
    city = os.path.join(tmp, "cs", "gtFine", "train", "aachen")
    os.makedirs(city)
    Image.fromarray(array).save(os.path.join(city, "aachen_000000_000019_gtFine_labelIds.png"))
    return os.path.join(tmp, "cs")


def partial_backbone(g, tmp):
    """Half of a ResNet-18's weights: fits, but leaves the other half random."""
    state = torch.load(g.checkpoint, weights_only=True)["state_dict"]
    prefix = "backbone.context_path.backbone."
    backbone = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    keys = sorted(backbone)
    path = os.path.join(tmp, "half.pth")
    torch.save({k: backbone[k] for k in keys[:len(keys) // 2]}, path)
    return path


def other_model_checkpoint(g, tmp):
    path = os.path.join(tmp, "other.pth")
    state = torch.load(g.checkpoint, weights_only=False)
    state["meta"]["model"] = "ICNet"
    torch.save(state, path)
    return path


@dataclass
class Case:
    """``make(good, tmp)`` -> (command, cwd, extra environment); ``says``: words the one
    error line must hold (lower case)."""
    id: str
    make: object
    says: tuple


def case(id, says, make):
    return pytest.param(Case(id, make, tuple(s.lower() for s in says)), id=id)


CASES = [
    # train.py: configs
    case("config-not-yaml", ["yaml"],
         lambda g, t: (train(g) + ["--config", config_file(t, "data: [1, 2\n  - x: {")],)),
    case("config-binary", ["yaml"],
         lambda g, t: (train(g) + ["--config", write(os.path.join(t, "b.yaml"),
                                                     bytes(range(256)) * 4, "wb")],)),
    case("config-empty", ["empty"],
         lambda g, t: (train(g) + ["--config", config_file(t, "")],)),
    case("config-a-list", ["mapping"],
         lambda g, t: (train(g) + ["--config", config_file(t, "- 1\n- 2\n")],)),
    case("config-wrong-type", ["batch_size"],
         lambda g, t: (train(g) + ["--config", tiny_with(g, t, "data:\n  batch_size: four\n")],)),
    case("config-unknown-key", ["batch_sise"],
         lambda g, t: (train(g) + ["--config", tiny_with(g, t, "data:\n  batch_sise: 4\n")],)),
    case("config-missing-base", ["_base_", "nowhere.yaml"],
         lambda g, t: (train(g) + ["--config", config_file(t, "_base_: nowhere.yaml\n")],)),
    case("config-base-cycle", ["_base_"],
         lambda g, t: (train(g) + ["--config", config_file(t, "_base_: bad.yaml\n")],)),
    case("config-base-not-a-string", ["_base_"],
         lambda g, t: (train(g) + ["--config", config_file(t, "_base_: {a: 1}\n")],)),
    case("config-is-a-folder", ["config"],
         lambda g, t: (train(g) + ["--config", t],)),
    case("crop-zero", ["crop_size"],
         lambda g, t: (train(g, "--cfg-options", "data.crop_size=[0,64]"),)),
    case("max-iters-zero", ["max_iters"], lambda g, t: (train(g) + ["--max_iters", "0"],)),
    case("negative-lr", ["lr"], lambda g, t: (train(g, "--lr", "-0.01"),)),
    case("zero-eval-interval", ["eval_interval"],
         lambda g, t: (train(g, "--eval_interval", "0"),)),
    case("cfg-option-malformed", ["cfg-options"],
         lambda g, t: (train(g, "--cfg-options", "data.batch_size"),)),
    case("batch-of-one", ["batch"], lambda g, t: (train(g, "--batch_size", "1"),)),
    case("slide-stride-larger-than-crop", ["stride"],
         lambda g, t: (train(g, "--eval-only", "--checkpoint", g.checkpoint, "--eval-mode",
                             "slide", "--slide-crop", "32,32", "--slide-stride", "48,48"),)),
    # train.py: paths and environment
    case("work-dir-is-a-file", ["work"],
         lambda g, t: ([a if a != g.work else write(os.path.join(t, "f"), "x")
                        for a in train(g)],)),
    case("work-dir-unwritable", ["work"],
         lambda g, t: ([a if a != g.work else "/proc/segzoo-work" for a in train(g)],)),
    case("log-file-is-a-folder", ["log"], lambda g, t: (train(g, "--log-file", t),)),
    case("disk-full-at-start", ["log"], lambda g, t: (train(g, "--log-file", "/dev/full"),)),
    case("data-path-missing", ["data_path"],
         lambda g, t: (train(g, "--data_path", os.path.join(t, "none")),)),
    case("data-path-is-a-file", ["data_path"],
         lambda g, t: (train(g, "--data_path", write(os.path.join(t, "f"), "x")),)),
    case("rank-size-not-a-number", ["rank_size"],
         lambda g, t: (train(g), REPO, {"RANK_SIZE": "two"})),
    case("rank-size-2-left-set-with-bad-flag", ["max_iters"],
         lambda g, t: (train(g) + ["--max_iters", "-1"], REPO, {"RANK_SIZE": "2"})),
    case("device-npu-missing", ["npu"], lambda g, t: (train(g) + ["--device", "npu"],)),
    case("device-cuda-missing", ["cuda"], lambda g, t: (train(g) + ["--device", "cuda"],)),
    case("pretrained-half-fitting", ["pretrained"],
         lambda g, t: (train(g, "--pretrained", partial_backbone(g, t)),)),
    case("pretrained-not-a-checkpoint", ["pretrained"],
         lambda g, t: (train(g, "--pretrained", write(os.path.join(t, "w.pth"), "text")),)),
    case("eval-checkpoint-missing", ["checkpoint"],
         lambda g, t: (train(g, "--eval-only", "--checkpoint", os.path.join(t, "no.pth")),)),
    case("eval-checkpoint-truncated", ["checkpoint"],
         lambda g, t: (train(g, "--eval-only", "--checkpoint",
                             damaged_copy(g.checkpoint, t, "cut.pth")),)),
    case("load-from-other-model", ["icnet"],
         lambda g, t: (train(g, "--load-from", other_model_checkpoint(g, t)),)),
    case("resume-from-missing", ["resume"],
         lambda g, t: (train(g, "--resume-from", os.path.join(t, "no.pth")),)),
    # the other models' entry points (the same library, their own scripts)
    case("icnet-config-empty", ["empty"],
         lambda g, t: ([sys.executable, os.path.join(REPO, "ICNet", "train.py"), "--config",
                        config_file(t, ""), "--work-dir", g.work],)),
    case("pspnet-data-path-not-voc", ["voc"],
         lambda g, t: ([sys.executable, os.path.join(REPO, "PSPNet", "train.py"), "--data_path",
                        t, "--work-dir", g.work, "--device", "cpu"],)),
    case("bisenetv2-paddleseg-train-bad-save-interval", ["checkpoint_interval"],
         lambda g, t: ([sys.executable, os.path.join(REPO, "BiSeNetV2", "tools", "train.py"),
                        "--save_interval", "0", "--save_dir", g.work, "--device", "cpu"],)),
    case("bisenetv2-export-opset-too-old", ["opset"],
         lambda g, t: ([sys.executable, os.path.join(REPO, "BiSeNetV2", "pth2onnx.py"),
                        "--checkpoint", g.checkpoint, "--output", g.onnx, "--opset", "9"],)),
    case("icnet-demo-input-missing", ["input"],
         lambda g, t: ([sys.executable, os.path.join(REPO, "ICNet", "demo.py"),
                        os.path.join(t, "none.jpg"), "--checkpoint", g.checkpoint,
                        "--out-dir", g.demo_out],)),
    case("pspnet-script-unknown-argument", ["--lr"],
         lambda g, t: (["bash", "test/train_full_1p.sh", f"--device_id={DEVICE_ID}", "--lr=1"],
                       os.path.join(REPO, "PSPNet"))),
    # --check-data on broken datasets
    case("check-data-dangling-symlink", ["label"],
         lambda g, t: (train(g, "--check-data", "--data_path", broken_data(
             g, t, lambda p: os.symlink(os.path.join(t, "gone.png"), p))),)),
    case("check-data-fifo", ["label"],
         lambda g, t: (train(g, "--check-data", "--data_path", broken_data(g, t, os.mkfifo)),)),
    case("check-data-truncated-png", ["label"],
         lambda g, t: (train(g, "--check-data", "--data_path", broken_data(
             g, t, lambda p: write(p, b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "wb"))),)),
    # launch scripts
    case("script-device-id-is-a-path", ["device id"],
         lambda g, t: (script("--device_id=../../configs"), BISENETV1)),
    case("script-config-not-yaml", ["yaml"],
         lambda g, t: (script(f"--config={config_file(t, 'a: [')}"), BISENETV1)),
    case("script-unknown-argument", ["--colour"],
         lambda g, t: (script("--colour=red"), BISENETV1)),
    case("script-bare-argument", ["key=value"], lambda g, t: (script("fast"), BISENETV1)),
    case("script-precision-mode", ["precision_mode"],
         lambda g, t: (script("--precision_mode=O5"), BISENETV1)),
    case("script-data-path-missing", ["data_path"],
         lambda g, t: (script(f"--data_path={t}/none"), BISENETV1)),
    case("script-max-iters-not-a-number", ["max_iters"],
         lambda g, t: (script(f"--config={g.config}", "--max_iters=many"), BISENETV1)),
    case("script-batch-of-one", ["batch"],
         lambda g, t: (script(f"--config={g.config}", "--batch_size=1"), BISENETV1)),
    case("script-error-inside-training-with-loader-workers", ["non-finite", "exit 2"],
         lambda g, t: (script("--config=" + tiny_with(g, t, "optim:\n  lr: 1.0e+30\n"),
                              "--workers=2", "--max_iters=6"), BISENETV1)),
    case("script-rank-size-not-a-number", ["rank_size"],
         lambda g, t: (["bash", "test/train_performance_8p.sh", f"--device_id={DEVICE_ID}"],
                       BISENETV1, {"RANK_SIZE": "x"})),
    # pth2onnx.py
    case("export-checkpoint-missing", ["checkpoint"],
         lambda g, t: ([sys.executable, EXPORT, "--checkpoint", os.path.join(t, "no.pth"),
                        "--output", g.onnx],)),
    case("export-checkpoint-truncated", ["checkpoint"],
         lambda g, t: ([sys.executable, EXPORT, "--checkpoint",
                        damaged_copy(g.checkpoint, t, "cut.pth"), "--output", g.onnx],)),
    case("export-output-folder-missing", ["output"],
         lambda g, t: ([sys.executable, EXPORT, "--checkpoint", g.checkpoint, "--output",
                        os.path.join(t, "none", "m.onnx"), "--input-shape", "64", "64"],)),
    case("export-output-is-a-folder", ["output"],
         lambda g, t: ([sys.executable, EXPORT, "--checkpoint", g.checkpoint, "--output", t,
                        "--input-shape", "64", "64"],)),
    case("export-opset-unsupported", ["opset"],
         lambda g, t: ([sys.executable, EXPORT, "--checkpoint", g.checkpoint, "--output",
                        g.onnx, "--opset", "99", "--input-shape", "64", "64"],)),
    case("export-zero-size", ["input-shape"],
         lambda g, t: ([sys.executable, EXPORT, "--checkpoint", g.checkpoint, "--output",
                        g.onnx, "--input-shape", "0", "64"],)),
    # demo.py
    case("demo-input-missing", ["input"],
         lambda g, t: ([sys.executable, DEMO, os.path.join(t, "none.png"), "--checkpoint",
                        g.checkpoint, "--out-dir", g.demo_out],)),
    case("demo-image-not-an-image", ["image"],
         lambda g, t: ([sys.executable, DEMO, write(os.path.join(t, "x.png"), "text"),
                        "--checkpoint", g.checkpoint, "--out-dir", g.demo_out],)),
    case("demo-out-dir-is-a-file", ["out-dir"],
         lambda g, t: ([sys.executable, DEMO, g.demo_in, "--checkpoint", g.checkpoint,
                        "--out-dir", write(os.path.join(t, "f"), "x")],)),
    case("demo-checkpoint-truncated", ["checkpoint"],
         lambda g, t: ([sys.executable, DEMO, g.demo_in, "--checkpoint",
                        damaged_copy(g.checkpoint, t, "cut.pth"), "--out-dir", g.demo_out],)),
    # converters
    case("converter-rgb-label-ids", ["rgb"],
         lambda g, t: ([sys.executable, CITYSCAPES_CONVERTER, converter_tree(
             t, np.zeros((8, 16, 3), np.uint8))],)),
    case("converter-16-bit-label-ids", ["mode"],
         lambda g, t: ([sys.executable, CITYSCAPES_CONVERTER, converter_tree(
             t, np.full((8, 16), 300, np.uint16))],)),
    case("converter-truncated-png", ["labelids"],
         lambda g, t: ([sys.executable, CITYSCAPES_CONVERTER, truncated_tree(t)],)),
    case("converter-root-missing", ["gtfine"],
         lambda g, t: ([sys.executable, CITYSCAPES_CONVERTER, os.path.join(t, "none")],)),
    case("dataset-list-root-missing", ["dataset_root"],
         lambda g, t: ([sys.executable, DATASET_LIST, os.path.join(t, "none")],)),
    case("voc-converter-damaged-mat", ["mat"],
         lambda g, t: ([sys.executable, VOC_CONVERTER, *damaged_sbd(t)],)),
    # the benchmark
    case("benchmark-crop-zero", ["crop"],
         lambda g, t: (BENCHMARK + ["--model", "BiSeNetV1", "--crop", "0", "64"],)),
    case("benchmark-json-folder-missing", ["json"],
         lambda g, t: (BENCHMARK + ["--model", "BiSeNetV1", "--json",
                                    os.path.join(t, "none", "b.json")],)),
    case("benchmark-infer-size-odd", ["infer-size"],
         lambda g, t: (BENCHMARK + ["--model", "BiSeNetV1", "--infer-size", "-5", "64"],)),
]


def broken_data(g, tmp, make):
    """A dataset copy whose first train label is replaced by ``make(path)``."""
    root = dataset_copy(g, tmp)
    replace(one_label(root), make)
    return root


def truncated_tree(tmp):
    root = converter_tree(tmp, np.zeros((8, 16), np.uint8))
    png = os.path.join(root, "gtFine", "train", "aachen", "aachen_000000_000019_gtFine_labelIds.png")
    with open(png, "rb") as f:
        data = f.read()
    write(png, data[:len(data) // 2], "wb")
    return root


def damaged_sbd(tmp):
    """A VOCdevkit with one image and an SBD root whose .mat for it is garbage."""
    devkit = os.path.join(tmp, "VOCdevkit")
    voc = os.path.join(devkit, "VOC2012")
    write(os.path.join(voc, "ImageSets", "Segmentation", "train.txt"), "")
    write(os.path.join(voc, "ImageSets", "Segmentation", "val.txt"), "")
    os.makedirs(os.path.join(voc, "SegmentationClass"))
    os.makedirs(os.path.join(voc, "JPEGImages"))
    sbd = os.path.join(tmp, "benchmark_RELEASE", "dataset")
    write(os.path.join(sbd, "train.txt"), "2008_000001\n")
    write(os.path.join(sbd, "val.txt"), "")
    write(os.path.join(sbd, "cls", "2008_000001.mat"), b"MATLAB 5.0 garbage", "wb")
    return devkit, os.path.dirname(sbd)


def attempt(command, cwd=REPO, env=None):
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    full_env.pop("SEGZOO_DEBUG", None)
    return subprocess.run(command, cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=CASE_TIMEOUT)


def changed_outputs(good):
    """Paths of the good run that a case changed (put back, so the next case starts clean)."""
    after = protected(good)
    changed = sorted(p for p in set(after) | set(good.snapshot)
                     if after.get(p) != good.snapshot.get(p))
    if changed:
        restore(good)
    return changed


def assert_refused(proc, says, good):
    """Non-zero exit, no traceback, one error line with ``says`` in it, nothing lost."""
    changed = changed_outputs(good)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr[-3000:]
    for word in says:
        assert word in errors[0].lower(), (word, errors[0])
    assert not changed, f"earlier good outputs changed: {changed}"
    return errors[0]


@pytest.mark.parametrize("bad", CASES)
def test_bad_input_is_one_line_and_loses_nothing(bad, good, tmp_path):
    command, *rest = bad.make(good, str(tmp_path))
    cwd = rest[0] if rest else REPO
    env = rest[1] if len(rest) > 1 else None
    assert_refused(attempt(command, cwd, env), bad.says, good)


def test_the_module_holds_forty_distinct_cases():
    assert len({c.values[0].id for c in CASES}) == len(CASES) >= 40


# ---- faults during a run -------------------------------------------------------------------

def interrupted(command, marker, sig, cwd=REPO, delay=0.0):
    """Start ``command``, wait for ``marker`` in its output, wait ``delay`` seconds more, send
    ``sig``; return (exit status, output). Bounded: a run that does not end is a failure."""
    proc = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if marker in line:
            break
    time.sleep(delay)
    proc.send_signal(sig)
    try:
        rest, _ = proc.communicate(timeout=CASE_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"{command} still running {CASE_TIMEOUT} s after {sig!r}")
    return proc.returncode, "".join(seen) + rest


def one_error_line(output, *words):
    assert "Traceback" not in output, output[-3000:]
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, output[-3000:]
    for word in words:
        assert word in errors[0], (word, errors[0])
    return errors[0]


def test_sigterm_to_a_launch_script_stops_its_trainer_with_a_checkpoint(good):
    """What a scheduler, ``docker stop`` or ``timeout`` sends: the trainer gets it, stops
    gracefully at an iteration with a checkpoint, and is not left running."""
    proc = subprocess.Popen(
        ["bash", "test/train_performance_1p.sh", f"--device_id={DEVICE_ID}", "--workers=2",
         "--device=cpu", f"--config={good.config}", "--max_iters=400"], cwd=BISENETV1,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log = os.path.join(SCRIPT_OUTPUT + ".running", f"train_{DEVICE_ID}.log")
    deadline = time.time() + CASE_TIMEOUT
    while not (os.path.isfile(log) and "Iter(train)" in open(log).read()):
        assert proc.poll() is None and time.time() < deadline, "no training iteration logged"
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=CASE_TIMEOUT)
    assert proc.returncode == 143, output[-3000:]
    one_error_line(output, "run failed (exit 143)", "untouched")
    trainers = subprocess.run(["pgrep", "-f", f"output/{DEVICE_ID}.running"],
                              capture_output=True, text=True).stdout.split()
    assert not trainers, "the trainer outlived its launch script"
    work = os.path.join(SCRIPT_OUTPUT + ".failed", "work_dir")
    assert any(name.startswith("iter_") for name in os.listdir(work)), os.listdir(work)
    assert not changed_outputs(good)


def test_ctrl_c_during_export_keeps_the_earlier_onnx(good):
    status, output = interrupted(
        [sys.executable, EXPORT, "--checkpoint", good.checkpoint, "--output", good.onnx,
         "--input-shape", "512", "1024"], "exporting", signal.SIGINT, delay=0.2)
    assert status == 130, output[-3000:]
    one_error_line(output, "interrupted")
    assert not [n for n in os.listdir(good.root) if n.startswith(".tmp-")]
    assert not changed_outputs(good)


def big_dataset(tmp, pairs):
    """A Cityscapes-layout dataset of ``pairs`` train frames (2048x1024, symlinks to one
    image and one label) and one val frame: slow enough to check that a signal lands inside
    the data check."""
    rng = np.random.default_rng(0)
    image = os.path.join(tmp, "image.png")
    label = os.path.join(tmp, "label.png")
    Image.fromarray(rng.integers(0, 255, (1024, 2048, 3), np.uint8)).save(image)
    Image.fromarray(rng.integers(0, 19, (1024, 2048), np.uint8)).save(label)
    root = os.path.join(tmp, "big")
    for split, count in (("train", pairs), ("val", 1)):
        images = os.path.join(root, "leftImg8bit", split, "city")
        labels = os.path.join(root, "gtFine", split, "city")
        os.makedirs(images)
        os.makedirs(labels)
        for i in range(count):
            os.symlink(image, os.path.join(images, f"city_{i:06d}_000019_leftImg8bit.png"))
            os.symlink(label, os.path.join(labels, f"city_{i:06d}_000019_gtFine_labelTrainIds.png"))
    return root


def test_ctrl_c_during_the_data_check(good, tmp_path):
    status, output = interrupted(
        train(good, "--check-data", "--workers", "2", "--data_path",
              big_dataset(str(tmp_path), 400)), "Run  model", signal.SIGINT, delay=2)
    assert status == 130, output[-3000:]
    one_error_line(output, "interrupted")
    assert not changed_outputs(good)


def test_rejected_script_runs_in_a_row_keep_the_last_good_result(good):
    """Two rejected runs used to rotate the last good result away, and a --device_id that is
    a path, given twice, deleted the model's configs."""
    for bad in (["--device_id=../../configs"], ["--device_id=../../configs"],
                ["--batch_size=1", f"--config={good.config}"],
                ["--batch_size=1", f"--config={good.config}"]):
        proc = attempt(["bash", "test/train_performance_1p.sh", "--device=cpu", *bad],
                       BISENETV1)
        assert_refused(proc, (), good)


def test_a_hostile_latest_pointer_falls_back_inside_the_work_dir(good, tmp_path):
    """``latest`` naming a file outside the work dir is ignored like a damaged checkpoint:
    evaluation takes the newest iter_*.pth of the work dir."""
    work = str(tmp_path / "work")
    shutil.copytree(good.work, work)
    outside = str(tmp_path / "outside.pth")
    shutil.copy(good.checkpoint, outside)
    for pointer in (b"../outside.pth", outside.encode(), b"\x00\xff junk", b"iter_1.pth/../x"):
        with open(os.path.join(work, "latest"), "wb") as f:
            f.write(pointer)
        proc = run([sys.executable, TRAIN, "--config", good.config, "--work-dir", work,
                    "--device", "cpu", "--eval-only"])
        assert f"Evaluating {os.path.join(work, 'iter_2.pth')}" in proc.stdout, proc.stdout
