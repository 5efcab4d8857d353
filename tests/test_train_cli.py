"""train.py end to end on synthetic Cityscapes: resume, AMP, pretrained weights, eval-only,
and one-line errors for bad input that leave existing checkpoints untouched."""
import os
import shutil

import pytest
import torch

from conftest import BISENETV1, assert_user_error, run

pytestmark = pytest.mark.e2e  # runs the project's commands: the full suite, not the unit tier

TRAIN = os.path.join(BISENETV1, "train.py")


def train(tiny_config, work_dir, *extra, check=True):
    return run(["python3", TRAIN, "--config", tiny_config, "--work-dir", str(work_dir),
                "--device", "cpu", *extra], check=check)


def weights(path):
    return torch.load(path, weights_only=True)


@pytest.fixture(scope="module")
def reference_run(tiny_config, synthetic_root, tmp_path_factory):
    """An uninterrupted 6-iteration run with checkpoints at 3 and 6 and a final evaluation."""
    work = tmp_path_factory.mktemp("reference")
    proc = train(tiny_config, work, "--cfg-options", "runtime.deterministic=true")
    return work, proc


def test_run_logs_trains_and_evaluates(reference_run):
    work, proc = reference_run
    assert "Iter(train) [6/6]" in proc.stdout and "Iter(val) [6/6]" in proc.stdout
    assert "mIoU:" in proc.stdout and "| road" in proc.stdout and "Summary  iters: 4" in proc.stdout
    assert "| host memory: " in (work / "train_rank0.log").read_text()  # the policy it ran with
    assert os.path.isfile(work / "iter_3.pth") and os.path.isfile(work / "iter_6.pth")
    assert (work / "latest").read_text() == "iter_6.pth"
    assert os.path.isfile(work / "eval_iter_6_whole.json") and os.path.isfile(work / "train_rank0.log")
    ckpt = weights(work / "iter_6.pth")
    assert set(ckpt) == {"meta", "state_dict", "optimizer", "scaler", "rng"}
    assert ckpt["meta"]["model"] == "BiSeNetV1" and ckpt["meta"]["iteration"] == 6


def test_resume_continues_the_same_run(reference_run, tiny_config, tmp_path):
    ref_work, _ = reference_run
    # explicit --resume-from into a new work dir
    proc = train(tiny_config, tmp_path / "explicit", "--resume-from",
                 str(ref_work / "iter_3.pth"), "--cfg-options", "runtime.deterministic=true")
    assert "at iteration 3" in proc.stdout and "Iter(train) [2/6]" not in proc.stdout
    assert "Iter(train) [4/6]" in proc.stdout
    # auto-resume: a work dir whose latest checkpoint is iteration 3
    auto = tmp_path / "auto"
    auto.mkdir()
    shutil.copy(ref_work / "iter_3.pth", auto / "iter_3.pth")
    (auto / "latest").write_text("iter_3.pth")
    proc = train(tiny_config, auto, "--cfg-options", "runtime.deterministic=true")
    assert "Resumed from" in proc.stdout and "at iteration 3" in proc.stdout
    ref = weights(ref_work / "iter_6.pth")
    for resumed in (weights(tmp_path / "explicit" / "iter_6.pth"), weights(auto / "iter_6.pth")):
        assert resumed["meta"]["iteration"] == 6
        assert resumed["optimizer"]["param_groups"][0]["lr"] == \
            ref["optimizer"]["param_groups"][0]["lr"]
        for key, value in ref["state_dict"].items():
            assert torch.allclose(resumed["state_dict"][key].float(), value.float(),
                                  rtol=1e-5, atol=1e-6), key
        for i, state in ref["optimizer"]["state"].items():
            assert torch.allclose(resumed["optimizer"]["state"][i]["momentum_buffer"],
                                  state["momentum_buffer"], rtol=1e-5, atol=1e-6)


def test_eval_only_reproduces_the_training_evaluation(reference_run, tiny_config):
    work, proc = reference_run
    final = [l for l in proc.stdout.splitlines() if "Iter(val)" in l][-1]
    again = train(tiny_config, work, "--eval-only", "--checkpoint", str(work / "iter_6.pth"))
    line = [l for l in again.stdout.splitlines() if "Iter(val)" in l][-1]
    assert final.split("mIoU:")[1].split()[0] == line.split("mIoU:")[1].split()[0]


def test_amp_bf16_and_pretrained(tiny_config, synthetic_root, tmp_path):
    from common.resnet import ResNet
    tv = ResNet(depth=18).state_dict()
    tv["fc.weight"], tv["fc.bias"] = torch.zeros(1000, 512), torch.zeros(1000)
    torch.save(tv, tmp_path / "resnet18_torchvision.pth")
    proc = train(tiny_config, tmp_path / "amp", "--amp", "--max_iters", "2", "--no-validate",
                 "--pretrained", str(tmp_path / "resnet18_torchvision.pth"))
    assert "O1 via torch.autocast, bfloat16" in proc.stdout
    assert "pretrained (torchvision format): loaded 120 tensors; not in file: 0" in proc.stdout
    proc = train(tiny_config, tmp_path / "o2", "--opt-level", "O2", "--max_iters", "2",
                 "--no-validate")
    assert "apex not installed: O2 runs as torch.autocast" in proc.stdout


@pytest.fixture
def trained_dir(reference_run, tmp_path):
    """A copy of the reference work dir, to check that failed runs leave it untouched."""
    work = tmp_path / "keep"
    shutil.copytree(reference_run[0], work)
    return work


def snapshot(work):
    return {f: (work / f).read_bytes() for f in sorted(os.listdir(work)) if f.endswith(".pth")
            or f == "latest"}


@pytest.mark.parametrize("args,fragments", [
    (["--data_path", "/nonexistent/cityscapes"], ["/nonexistent/cityscapes", "does not exist"]),
    (["--device", "cuda"], ["no CUDA GPU", "--device cpu"]),
    (["--device", "npu"], ["no NPU"]),
    (["--batch_size", "0"], ["data.batch_size must be > 0"]),
    (["--opt-level", "O7"], ["--opt-level", "invalid choice"]),
    (["--amp", "--opt-level", "O0"], ["contradicts"]),
    (["--apex", "--amp"], ["apex is not installed"]),
    (["--loss-scale", "big"], ["--loss-scale 'big'"]),
    (["--cfg-options", "data.bogus=1"], ["data.bogus is unknown"]),
    (["--resume-from", "/nonexistent.pth"], ["does not exist"]),
])
def test_bad_input_is_one_line_and_loses_nothing(trained_dir, tiny_config, args, fragments):
    before = snapshot(trained_dir)
    proc = train(tiny_config, trained_dir, *args, check=False)
    assert_user_error(proc, *fragments)
    assert snapshot(trained_dir) == before


def test_dataset_problems_are_one_line(trained_dir, tiny_config, synthetic_root, tmp_path):
    import glob
    root = tmp_path / "cs"
    shutil.copytree(synthetic_root, root)
    for p in glob.glob(str(root / "gtFine" / "*" / "*" / "*_labelTrainIds.png")):
        os.remove(p)
    before = snapshot(trained_dir)
    proc = train(tiny_config, trained_dir, "--data_path", str(root), check=False)
    assert_user_error(proc, "labelTrainIds", "python -m common.tools.convert_cityscapes")
    root2 = tmp_path / "cs2"
    shutil.copytree(synthetic_root, root2)
    bad = sorted(glob.glob(str(root2 / "leftImg8bit" / "train" / "*" / "*.png")))[0]
    data = open(bad, "rb").read()
    open(bad, "wb").write(data[: len(data) // 2])
    proc = train(tiny_config, tmp_path / "t", "--data_path", str(root2), "--workers", "1",
                 "--no-validate", "--max_iters", "20", check=False)
    assert_user_error(proc, os.path.basename(bad), "unreadable or truncated")
    assert snapshot(trained_dir) == before


def test_checkpoint_of_another_model_or_truncated(trained_dir, tiny_config, tmp_path):
    from BiSeNetV1.bisenetv1 import BiSeNetV1
    r50 = tmp_path / "r50.pth"
    torch.save({"state_dict": BiSeNetV1(50).state_dict()}, r50)
    proc = train(tiny_config, trained_dir, "--eval-only", "--checkpoint", str(r50), check=False)
    assert_user_error(proc, "does not fit BiSeNetV1")
    cut = tmp_path / "cut.pth"
    data = (trained_dir / "iter_6.pth").read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    proc = train(tiny_config, trained_dir, "--load-from", str(cut), check=False)
    assert_user_error(proc, "truncated or corrupted")


def test_load_from_profile_and_schedule_flags(reference_run, tiny_config, tmp_path):
    work, _ = reference_run
    proc = train(tiny_config, tmp_path / "ft", "--load-from", str(work / "iter_6.pth"),
                 "--prof", "--max_iters", "8", "--lr", "0.02", "--seed", "3",
                 "--eval_interval", "4", "--no-validate")
    assert "Loaded weights from" in proc.stdout and "Resumed" not in proc.stdout
    assert "Iter(train) [2/8]" in proc.stdout  # fine-tuning starts at iteration 0
    assert os.path.getsize(tmp_path / "ft" / "profile_trace.json") > 1000
    assert "Self CPU" in proc.stdout  # the profiler's table is logged
    ckpt = weights(tmp_path / "ft" / "iter_8.pth")
    assert ckpt["meta"]["config"]["optim"]["lr"] == 0.02
    assert ckpt["meta"]["config"]["runtime"]["seed"] == 3
