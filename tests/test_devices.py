"""Device paths that cannot run here (Ascend NPU, CUDA), decided by one capability table
(common/device_caps.py) and tested by simulation through the code users run."""
import os
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
        assert proc.returncode == 2
        line = err.strip().splitlines()[-1]
        assert "ranks resume from different iterations (rank 0: 2, rank 1: 0)" in line
        assert "shared filesystem" in line
