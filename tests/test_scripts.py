"""The ModelZoo scripts end to end on synthetic Cityscapes, result logs parsed and checked:
1p performance, 1p full (short schedule) + eval, 8p with RANK_SIZE=2 (gloo), two one-process
"nodes" on localhost, and argument errors."""
import os
import platform
import socket
import subprocess

import pytest

from conftest import (BISENETV1, MODELS, REPO, assert_user_error, cann_sourcings,
                      emulated_env, fake_cann_env, run)

pytestmark = pytest.mark.e2e  # runs the project's commands: the full suite, not the unit tier

# The runs that train with evaluation and evaluate (1 and 2 processes), and the 2-process
# performance run, go as on an Ascend 910 (the device emulation: no channels_last, no float64
# collectives, torch_npu's scaler, pinning with a device); the others on the CPU as it is.
NPU = emulated_env("npu")

TEST_DIR = os.path.join(BISENETV1, "test")
ALL_MODELS = pytest.mark.parametrize("model", list(MODELS))
# key 8 as the real ModelZoo scripts of each model write it (BiSeNetV2's seed is PaddleSeg's)
ACCURACY_KEY = {"BiSeNetV1": "mIoU", "PSPNet": "mIoU", "ICNet": "TrainAccuracy",
                "BiSeNetV2": "TrainAccuracy"}


def train_keys(model):
    return ["Network", "RankSize", "BatchSize", "DeviceType", "CaseName", "ActualFPS",
            "TrainingTime", ACCURACY_KEY[model], "ActualLoss", "E2ETrainingTime"]


EVAL_KEYS = ["Network", "RankSize", "BatchSize", "DeviceType", "CaseName", "ActualFPS",
             "ValTime", "mIoU", "E2EValTime"]


def script(name, *args, env=None, cwd=None, check=True, model="BiSeNetV1"):
    """Run a model's test/<name> from its directory (or from ``cwd``, e.g. test/ itself), as
    on a CANN machine: every run sources a CANN-shaped set_env.sh under the scripts' set -u,
    with PYTHONPATH and LD_LIBRARY_PATH unset; a run that went through has sourced it."""
    model_dir = os.path.join(REPO, model)
    cwd = cwd or model_dir
    path = f"test/{name}" if cwd == model_dir else name
    before = cann_sourcings()
    proc = run(["bash", path, *args], cwd=cwd, env={**fake_cann_env(), **(env or {})},
               check=check)
    if proc.returncode == 0 and "--help" not in args:
        assert cann_sourcings() > before, "the launch script did not source CANN's set_env.sh"
    return proc


def result_log(device_id, case_name, model="BiSeNetV1"):
    """The result log as an ordered list of (key, value)."""
    path = os.path.join(REPO, model, "test", "output", str(device_id), f"{case_name}.log")
    with open(path) as f:
        return [tuple(part.strip() for part in line.split("=", 1)) for line in f]


def check_result(fields, network_case, rank_size, batch, accuracy, model="BiSeNetV1"):
    """The result log as the real ModelZoo scripts write it: BatchSize per device, no None."""
    values = dict(fields)
    evaluation = network_case.endswith("_eval")
    keys = EVAL_KEYS if evaluation else train_keys(model)
    assert [k for k, _ in fields][:len(keys)] == keys
    assert "None" not in values.values()
    assert values["Network"] == model and values["CaseName"] == network_case
    assert values["RankSize"] == str(rank_size) and values["BatchSize"] == str(batch)
    assert values["DeviceType"] == platform.machine()
    assert float(values["ActualFPS"]) > 0
    assert float(values["ValTime" if evaluation else "TrainingTime"]) > 0
    assert int(values["E2EValTime" if evaluation else "E2ETrainingTime"]) >= 0
    accuracy_key = "mIoU" if evaluation else ACCURACY_KEY[model]
    if accuracy:
        assert 0 <= float(values[accuracy_key]) <= 100
    else:
        assert values[accuracy_key] == ""  # a performance run has no accuracy: left empty
    return values


def printed(proc):
    lines = proc.stdout.strip().splitlines()[-3:]
    assert lines[0].startswith("Final Performance images/sec : ")
    assert lines[1].startswith("Final Train Accuracy : ")
    assert lines[2].startswith("E2E Training Duration sec : ")
    return lines


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@ALL_MODELS
def test_performance_1p_from_inside_test_dir(model, tiny_configs, synthetic_root):
    test_dir = os.path.join(REPO, model, "test")
    proc = script("train_performance_1p.sh", f"--config={tiny_configs[model]}", "--max_iters=6",
                  "--device=cpu", cwd=test_dir)
    case = f"{model}_bs2_1p_perf"
    values = check_result(result_log(0, case, model), case, 1, 2, accuracy=False, model=model)
    assert printed(proc)[0].endswith(values["ActualFPS"])
    float(values["ActualLoss"])
    out = os.path.join(test_dir, "output", "0")
    with open(os.path.join(out, f"train_{case}_loss.txt")) as f:
        assert len(f.read().split()) == 3  # logged at iterations 2, 4, 6
    assert os.path.isfile(os.path.join(out, "train_0.log"))
    assert os.path.isfile(os.path.join(out, "train_0_rank0.log"))


@ALL_MODELS
def test_full_1p_then_eval_1p_and_8p(model, tiny_configs, synthetic_root, tmp_path):
    cfg, work = tiny_configs[model], tmp_path / "work"
    proc = script("train_full_1p.sh", f"--config={cfg}", f"--work_dir={work}", "--device_id=3",
                  "--device=cpu", env={**NPU, "ASCEND_DEVICE_ID": "0"}, model=model)
    case = f"{model}_bs2_1p_acc"
    full = check_result(result_log(3, case, model), case, 1, 2, accuracy=True, model=model)
    assert printed(proc)[1].endswith(full[ACCURACY_KEY[model]])
    assert {"mIoU", "aAcc", "mAcc"} <= set(full)
    assert os.path.isfile(work / "iter_6.pth")
    curves = os.path.join(REPO, model, "test", "output", "3", "curves.png")
    assert os.path.getsize(curves) > 10000  # the full run left its curves beside the logs
    if model == "BiSeNetV1":  # the shared script body: one model suffices
        # running the full script again on a finished work dir re-evaluates, trains nothing
        script("train_full_1p.sh", f"--config={cfg}", f"--work_dir={work}", "--device=cpu",
               env=NPU, model=model)
        again = dict(result_log(0, case, model))
        assert again["mIoU"] == full["mIoU"] and again["ActualFPS"] == ""
    script("train_eval_1p.sh", f"--config={cfg}", f"--work_dir={work}", "--device=cpu",
           env=NPU, model=model)
    case = f"{model}_bs2_1p_eval"
    ev = check_result(result_log(0, case, model), case, 1, 2, accuracy=True, model=model)
    assert ev["mIoU"] == full["mIoU"]  # same weights, same val set
    # PSPNet's 8p evaluation goes through the seed's name for it, train_val_8p.sh
    script("train_val_8p.sh" if model == "PSPNet" else "train_eval_8p.sh", f"--config={cfg}",
           f"--checkpoint={work / 'iter_6.pth'}", "--device=cpu",
           f"--master_port={free_port()}", env={**NPU, "RANK_SIZE": "2"}, model=model)
    case = f"{model}_bs2_2p_eval"
    ev8 = check_result(result_log(0, case, model), case, 2, 2, accuracy=True, model=model)
    # distributed evaluation counts every image exactly once
    assert (ev8["mIoU"], ev8["aAcc"], ev8["mAcc"]) == (ev["mIoU"], ev["aAcc"], ev["mAcc"])


@pytest.mark.parametrize("model", ["BiSeNetV1"])  # shared script body; each model's DDP: full_8p
def test_performance_8p_two_ranks(model, tiny_configs, synthetic_root):
    proc = script("train_performance_8p.sh", f"--config={tiny_configs[model]}", "--max_iters=6",
                  "--device=cpu", f"--master_port={free_port()}",
                  env={**NPU, "RANK_SIZE": "2"}, model=model)
    case = f"{model}_bs2_2p_perf"
    check_result(result_log(0, case, model), case, 2, 2, accuracy=False, model=model)
    printed(proc)
    out = os.path.join(REPO, model, "test", "output", "0")
    for rank in (0, 1):  # each rank logs to its own file
        with open(os.path.join(out, f"train_0_rank{rank}.log")) as f:
            assert "Iter(train) [6/6]" in f.read()


@ALL_MODELS
def test_full_8p_two_ranks(model, tiny_configs, synthetic_root, tmp_path):
    script("train_full_8p.sh", f"--config={tiny_configs[model]}", f"--work_dir={tmp_path}",
           "--device=cpu", f"--master_port={free_port()}", env={"RANK_SIZE": "2"}, model=model)
    case = f"{model}_bs2_2p_acc"
    logged = check_result(result_log(0, case, model), case, 2, 2, accuracy=True, model=model)
    assert os.path.isfile(tmp_path / "iter_6.pth")
    # the mIoU logged by the 2-process run is the one of the checkpoint rank 0 saved (rank 0's
    # BatchNorm statistics are broadcast before a distributed evaluation)
    script("train_eval_1p.sh", f"--config={tiny_configs[model]}",
           f"--checkpoint={tmp_path / 'iter_6.pth'}", "--device=cpu", model=model)
    again = dict(result_log(0, f"{model}_bs2_1p_eval", model))
    assert (again["mIoU"], again["aAcc"]) == (logged["mIoU"], logged["aAcc"])


def test_two_nodes_on_localhost(tiny_config, synthetic_root):
    port = free_port()
    common = ["bash", "test/train_performance_8p.sh", f"--config={tiny_config}",
              "--max_iters=6", "--device=cpu", "--nnodes=2", "--master_addr=127.0.0.1",
              f"--master_port={port}"]
    env = {**os.environ, "RANK_SIZE": "1"}
    node1 = subprocess.Popen(common + ["--node_rank=1"], cwd=BISENETV1,
                             env={**env, "ASCEND_DEVICE_ID": "1"}, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    node0 = run(common + ["--node_rank=0"], cwd=BISENETV1, env={"RANK_SIZE": "1",
                                                                "ASCEND_DEVICE_ID": "0"})
    out1, _ = node1.communicate(timeout=300)
    assert node1.returncode == 0, out1
    check_result(result_log(0, "BiSeNetV1_bs2_2p_perf"), "BiSeNetV1_bs2_2p_perf", 2, 2,
                 accuracy=False)
    printed(node0)
    assert "node 1 done" in out1


def test_help_and_argument_errors(tmp_path):
    proc = script("train_full_1p.sh", "--help")
    assert "--data_path=DIR" in proc.stdout and "--nnodes" in proc.stdout
    out = os.path.join(TEST_DIR, "output", "7")
    os.makedirs(out, exist_ok=True)
    marker = os.path.join(out, "keep.txt")
    open(marker, "w").write("previous run")
    for args, fragment in [(["--bogus=1"], "unknown argument --bogus"),
                           (["positional"], "is not --key=value"),
                           (["--data_path=/nonexistent"], "/nonexistent does not exist"),
                           (["--precision_mode=O9"], "--precision_mode=O9"),
                           (["--config=/nonexistent.yaml"], "does not exist"),
                           (["--device_id=../../configs"], "is not a number")]:
        proc = script("train_performance_1p.sh", "--device_id=7", *args, check=False)
        assert_user_error(proc, fragment)
        assert open(marker).read() == "previous run"  # a rejected run touches no output


def test_a_failed_run_keeps_the_last_good_outputs(tiny_config, synthetic_root):
    """The run writes into test/output/<id>.running/; only success replaces <id>/."""
    script("train_performance_1p.sh", f"--config={tiny_config}", "--max_iters=4",
           "--device=cpu", "--device_id=5")
    out = os.path.join(TEST_DIR, "output", "5")
    good = {name: open(os.path.join(out, name), "rb").read() for name in os.listdir(out)
            if os.path.isfile(os.path.join(out, name))}
    proc = script("train_performance_1p.sh", f"--config={tiny_config}", "--batch_size=1",
                  "--device=cpu", "--device_id=5", check=False)
    assert proc.returncode == 2 and "batch of 1 image per device" in proc.stderr
    assert "the previous outputs in" in proc.stderr.strip().splitlines()[-1]
    assert {name: open(os.path.join(out, name), "rb").read() for name in good} == good
    assert os.path.isfile(os.path.join(TEST_DIR, "output", "5.failed", "train_5.log"))
    proc = script("train_performance_8p.sh", f"--config={tiny_config}", check=False,
                  env={"RANK_SIZE": "x"})
    assert_user_error(proc, "RANK_SIZE='x' is not a positive number")


def test_env_npu_is_harmless_without_cann():
    proc = run(["bash", "-c", "source ./env_npu.sh; echo \"queue=${TASK_QUEUE_ENABLE:-unset}\""])
    assert "queue=unset" in proc.stdout
