"""Device paths that cannot run here (Ascend NPU, CUDA), decided by one capability table
(common/device_caps.py) and tested by simulation through the code users run."""
import os
import shutil
import subprocess
import sys

import pytest
import torch

from common.amp import MixedPrecision, StaticLossScaler
from common.device_caps import CAPS, caps, check_channels_last
from common.errors import UserError
from common.fuse import fast_inference_model
from conftest import NETWORKS, REPO, assert_user_error, run
from test_reliability import command, free_port


def test_capability_table():
    npu, cuda, cpu = caps("npu"), caps("cuda"), caps("cpu")
    assert not npu.channels_last and cuda.channels_last and cpu.channels_last
    assert npu.pin_memory and cuda.pin_memory and not cpu.pin_memory
    assert all(c.collective_dtype == torch.float32 for c in CAPS.values())  # no HCCL float64
    assert npu.grad_scaler == "torch_npu" and cuda.grad_scaler == "torch"
    assert (npu.autocast_dtype, cpu.autocast_dtype) == (torch.float16, torch.bfloat16)
    with pytest.raises(UserError, match="not one of"):
        caps("tpu")


def test_npu_evaluation_fast_path_stays_contiguous():
    """The evaluation fast path asks the table: BN folded on every device, NHWC only where
    the device copies it (torch_npu's _to_copy rejects channels_last)."""
    net = NETWORKS["BiSeNetV2"]().eval()
    on_npu = fast_inference_model(net, caps("npu").channels_last)
    assert all(p.is_contiguous() for p in on_npu.parameters())
    on_cuda = fast_inference_model(net, caps("cuda").channels_last)
    weights = [p for p in on_cuda.parameters() if p.dim() == 4]
    assert any(p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
               for p in weights)
    with pytest.raises(UserError, match="not supported on npu"):
        check_channels_last("npu")
    check_channels_last("cuda")


def test_apex_zero_grad_takes_no_argument():
    class ApexPatchedSGD(torch.optim.SGD):
        def zero_grad(self):  # apex O2 patches zero_grad without set_to_none
            super().zero_grad(set_to_none=True)
    weight = torch.nn.Parameter(torch.ones(2))
    optimizer = ApexPatchedSGD([weight], lr=0.1)
    weight.sum().backward()
    amp = MixedPrecision("cpu")
    amp.apex = object()  # as when apex amp is initialised
    amp.zero_grad(optimizer)
    assert weight.grad is None


def test_static_loss_scaler_unscales_in_one_pass():
    params = [torch.nn.Parameter(torch.ones(3)) for _ in range(4)]
    optimizer = torch.optim.SGD(params, lr=0.1)
    scaler = StaticLossScaler(512)
    scaler.scale(sum(p.sum() for p in params)).backward()
    scaler.unscale_(optimizer)
    assert all(torch.equal(p.grad, torch.ones(3)) for p in params)
    assert not scaler._found_inf
    params[2].grad[0] = float("inf")
    scaler.unscale_(optimizer)
    scaler.step(optimizer)
    assert scaler.skipped and all(torch.equal(p.detach(), torch.ones(3)) for p in params)


@pytest.mark.e2e
def test_torch_npu_that_does_not_import_is_an_error_not_a_cpu_run(tiny_config,
                                                                   synthetic_root, tmp_path):
    """torch_npu installed without a CANN runtime: --device auto stops with one line instead
    of training on the CPU."""
    fake = tmp_path / "site" / "torch_npu"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('libhccl.so: cannot open shared object')\n")
    proc = run([sys.executable, os.path.join(REPO, "BiSeNetV1", "train.py"), "--config",
                tiny_config, "--work-dir", str(tmp_path / "w")], check=False,
               env={"PYTHONPATH": str(tmp_path / "site")})
    assert_user_error(proc, "torch_npu is installed but does not import", "env_npu.sh")
    assert not (tmp_path / "w" / "iter_1.pth").exists()


@pytest.mark.e2e
def test_nodes_without_a_shared_work_dir_stop_instead_of_hanging(tiny_config, synthetic_root,
                                                                  tmp_path):
    """Two one-process "nodes" on localhost, each with its own work dir: only rank 0 wrote
    checkpoints, so on the next start they would resume at different iterations."""
    def launch(max_iters, port):
        procs = []
        for rank in (0, 1):
            env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": "0",
                   "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
            procs.append(subprocess.Popen(
                command(tiny_config, tmp_path / f"node{rank}", "--max_iters", str(max_iters)),
                cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        return [(p, *p.communicate(timeout=300)) for p in procs]
    for proc, out, err in launch(2, free_port()):
        assert proc.returncode == 0, err
    assert (tmp_path / "node0" / "iter_2.pth").exists()
    assert not (tmp_path / "node1" / "iter_2.pth").exists()
    for proc, out, err in launch(4, free_port()):
        assert proc.returncode == 2, err
        line = err.strip().splitlines()[-1]
        assert "ranks resume from different iterations (rank 0: 2, rank 1: 0)" in line
        assert "shared filesystem" in line


def test_gpu_peak_table_and_share_of_peak():
    from common.tools.benchmark import peak_for_name, share_of_peak
    sxm, pcie = peak_for_name("NVIDIA H100 80GB HBM3"), peak_for_name("NVIDIA H100 PCIe")
    assert (sxm["fp32"], sxm["tf32"], sxm["half"]) == (67.0, 494.5, 989.5)
    assert (pcie["fp32"], pcie["half"]) == (51.0, 756.0)
    assert peak_for_name("NVIDIA H200")["half"] == 989.5
    assert peak_for_name("NVIDIA A100-SXM4-80GB")["tf32"] == 156.0
    assert share_of_peak(98.95, sxm, half=True, tf32=True) == pytest.approx(0.1)
    assert share_of_peak(49.45, sxm, half=False, tf32=True) == pytest.approx(0.1)  # TF32 convs
    assert share_of_peak(6.7, sxm, half=False, tf32=False) == pytest.approx(0.1)
    assert share_of_peak(1.0, peak_for_name("Some GPU"), half=True, tf32=True) is None


def test_apex_loss_scale_is_checkpointed():
    class FakeApexAmp:
        """apex.amp's state interface (its loss scalers' scale and unskipped count)."""
        def __init__(self):
            self.state = {"loss_scaler0": {"loss_scale": 1024.0, "unskipped": 3}}

        def state_dict(self):
            return dict(self.state)

        def load_state_dict(self, state):
            self.state = dict(state)
    amp = MixedPrecision("cpu")
    amp.apex = FakeApexAmp()
    saved = amp.state_dict()
    assert saved == {"apex": {"loss_scaler0": {"loss_scale": 1024.0, "unskipped": 3}}}
    other = MixedPrecision("cpu")
    other.apex = FakeApexAmp()
    other.apex.state = {}
    other.load_state_dict(saved)
    assert other.apex.state == saved["apex"]


def two_processes(tiny_config, work, *extra):
    port = free_port()
    procs = []
    for rank in (0, 1):
        env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank),
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
        procs.append(subprocess.Popen(command(tiny_config, work, *extra), cwd=REPO, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
    return [(p, *p.communicate(timeout=300)) for p in procs]


@pytest.mark.e2e
def test_every_rank_keeps_its_own_rng_and_rank0_alone_checks_the_data(tiny_config,
                                                                      synthetic_root, tmp_path):
    for proc, _, err in two_processes(tiny_config, tmp_path / "rng", "--max_iters", "2"):
        assert proc.returncode == 0, err
    rng = torch.load(tmp_path / "rng" / "iter_2.pth", weights_only=True)["rng"]
    assert len(rng["torch"]) == 2 and not torch.equal(rng["torch"][0], rng["torch"][1])
    broken = tmp_path / "broken"
    shutil.copytree(synthetic_root, broken)
    label = sorted(broken.glob("gtFine/train/*/*_labelTrainIds.png"))[0]
    label.write_bytes(b"not a png")
    results = two_processes(tiny_config, tmp_path / "b", "--data_path", str(broken))
    lines = [err.strip().splitlines()[-1] for _, _, err in results]
    assert all(p.returncode == 2 for p, _, _ in results) and lines[0] == lines[1]
    assert "problem(s) in the dataset" in lines[0] and label.name in lines[0]
    with open(tmp_path / "b" / "train_rank1.log") as f:
        assert "data problem:" not in f.read()  # rank 1 decoded nothing; rank 0 told it


def test_dynamic_loss_scaler_decides_on_the_device():
    """With a dynamic GradScaler the step's outcome stays a device tensor (read once per log
    line, not once per iteration)."""
    amp = MixedPrecision("cpu", "O1")
    amp.scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    weight = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.SGD([weight], lr=0.1)
    taken = amp.backward_and_step(weight.sum(), optimizer)
    assert isinstance(taken, torch.Tensor) and taken.dim() == 0 and bool(taken)
    amp.zero_grad(optimizer)
    skipped = amp.backward_and_step((weight * float("inf")).sum(), optimizer)
    assert isinstance(skipped, torch.Tensor) and not bool(skipped)
