"""The accelerator paths through the code users run, under the device emulation
(tests/emulation/emulate_device.py): inside this process for the AMP and loader mechanics, and
as subprocesses for the benchmark of every model, mixed-precision training as on CUDA, and the
start-up refusals. The launch scripts (train.py with its evaluation, 1p and 2-process eval
scripts, the 2-process performance script) run under the emulated NPU in test_scripts.py,
pth2onnx.py and demo.py of every model in test_export_and_demo.py."""
import os
import sys

import cv2
import pytest
import torch

from common import training
from common.amp import MixedPrecision
from common.datasets import PadCollate, loader_worker_init
from common.device_caps import NpuFlagCheck, caps
from common.fuse import fast_inference_model
from conftest import EMULATION, MODELS, NETWORKS, REPO, assert_user_error, emulated_env, run

sys.path.insert(0, EMULATION)
from emulate_device import Refused, emulated  # noqa: E402

OPTIM = {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4}


def tiny_net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 2, 1))


def train_two_steps(optimizer_for, amp, overflow_first):
    """Two iterations through MixedPrecision.backward_and_step; the first overflows when
    ``overflow_first``. Returns the weights, the momentum buffers and what each step did."""
    net = tiny_net()
    optimizer = optimizer_for(net.parameters())
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    taken = []
    for step in range(2):
        amp.zero_grad(optimizer)
        with amp.autocast():
            loss = net(x).float().square().mean()
        if step == 0 and overflow_first:
            loss = loss * float("inf")
        taken.append(bool(amp.backward_and_step(loss, optimizer)))
    momentum = [optimizer.state[p].get("momentum_buffer") for p in net.parameters()]
    return [p.detach().clone() for p in net.parameters()], momentum, taken


def test_first_step_overflow_under_cuda_fused_sgd_matches_an_unfused_run():
    """CUDA's optimizer (fused SGD) and scaler (GradScaler hands its overflow flag to the fused
    kernel): a skipped first step must not leave uninitialised momentum for the next one."""
    with emulated("cuda"):
        amp = MixedPrecision("cpu", "O1", "dynamic")
        assert type(amp.scaler) is torch.amp.GradScaler and amp.dtype == torch.float16
        fused = lambda params: training.sgd(params, OPTIM, amp)  # noqa: E731
        weights, momentum, taken = train_two_steps(fused, amp, overflow_first=True)
        assert fused(tiny_net().parameters()).defaults["fused"]
        plain_amp = MixedPrecision("cpu", "O1", "dynamic")
        unfused = lambda params: torch.optim.SGD(params, foreach=False, **OPTIM)  # noqa: E731
        ref_weights, ref_momentum, ref_taken = train_two_steps(unfused, plain_amp, True)
    assert taken == ref_taken == [False, True]
    for got, want in zip(weights + momentum, ref_weights + ref_momentum):
        torch.testing.assert_close(got, want)
        assert torch.isfinite(got).all()


def test_npu_static_loss_scale_skips_a_saturated_overflow():
    """Ascend 910 (saturation mode): an overflowed gradient stays finite; the step must be
    skipped from the NPU's overflow flag, as the dynamic torch_npu scaler does."""
    with emulated("npu"):
        for loss_scale in ("128", "dynamic"):
            amp = MixedPrecision("cpu", "O1", loss_scale)
            assert isinstance(amp.overflow, NpuFlagCheck)
            before = [p.detach().clone() for p in tiny_net().parameters()]
            sgd = lambda params: training.sgd(params, OPTIM, amp)  # noqa: E731
            weights, _, taken = train_two_steps(sgd, amp, overflow_first=True)
            assert taken == [False, True], loss_scale
            assert not all(torch.equal(a, b) for a, b in zip(weights, before))
            _, _, alone = train_two_steps(sgd, MixedPrecision("cpu", "O1", loss_scale), False)
            assert alone == [True, True]


def test_npu_refuses_what_torch_npu_refuses():
    with emulated("npu"):
        with pytest.raises(Refused, match="channels_last"):
            torch.zeros(1, 3, 4, 4).contiguous(memory_format=torch.channels_last)
        with pytest.raises(Refused, match="GradScaler"):
            torch.amp.GradScaler("cpu")
        with pytest.raises(Refused, match="pin_memory_device"):
            torch.utils.data.DataLoader([1, 2], pin_memory=True)
        assert caps("cpu").kind == "npu"
    assert caps("cpu").kind == "cpu"
    torch.zeros(1, 3, 4, 4).contiguous(memory_format=torch.channels_last)  # undone


def test_train_loader_pins_for_the_device_and_limits_opencv_in_workers(monkeypatch):
    class Rt:
        device = torch.device("cpu")
    with emulated("npu"):
        assert training.pinning(Rt.device) == {"pin_memory": True, "pin_memory_device": "cpu"}
    assert training.pinning(Rt.device) == {"pin_memory": False}

    class Threads(torch.utils.data.Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, index):
            return cv2.getNumThreads()
    loader = torch.utils.data.DataLoader(Threads(), num_workers=1,
                                         worker_init_fn=loader_worker_init)
    assert [int(n) for n in loader] == [1, 1]


def test_labels_travel_as_uint8_and_reach_the_loss_as_int64():
    sample = (torch.zeros(3, 6, 6, dtype=torch.uint8), torch.full((6, 6), 7, dtype=torch.uint8))
    images, labels, valid = PadCollate((8, 8), 255)([sample, sample])
    assert labels.dtype == torch.uint8 and labels[0, 7, 7] == 255 and labels[0, 0, 0] == 7
    from common.transforms import Normalize
    _, on_device = training.device_batch((images, labels, valid), torch.device("cpu"),
                                         Normalize())
    assert on_device.dtype == torch.int64 and on_device[0, 0, 0] == 7


def test_fast_evaluation_copy_folds_sync_bn_and_drops_apex_patched_forward():
    net = NETWORKS["BiSeNetV2"]().eval()
    synced = torch.nn.SyncBatchNorm.convert_sync_batchnorm(NETWORKS["BiSeNetV2"]()).eval()
    synced.load_state_dict(net.state_dict())
    batchnorms = lambda model: sum(isinstance(m, torch.nn.modules.batchnorm._BatchNorm)  # noqa
                                   for m in model.modules())
    fast = fast_inference_model(synced, channels_last=False)
    assert batchnorms(synced) == 62 and batchnorms(fast) == batchnorms(
        fast_inference_model(net, channels_last=False)) == 1  # a BN after pooling, no conv
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), net(x), atol=1e-4, rtol=1e-4)

    calls = []
    original = net.forward

    def patched(*args):  # as apex O2's amp.initialize patches forward on the instance
        calls.append(1)
        return original(*args)
    net.forward = patched
    net.half()  # apex O2 keeps fp16 weights
    with torch.no_grad():
        out = fast_inference_model(net, channels_last=False)(x)
    assert calls == [] and out.dtype == torch.float32


def test_evaluation_runs_in_fp32_without_cudnn_benchmark(tiny_config, synthetic_root, tmp_path):
    """mmseg evaluates in fp32 whatever the training precision; cudnn's per-shape timing is
    off while images of several sizes pass."""
    from common import cityscapes
    from common.config import load_config
    from common.data import build_val_set
    from common.evaluation import Evaluator

    seen = []

    class Spy(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            seen.append((torch.is_autocast_enabled("cpu"), torch.backends.cudnn.benchmark,
                         x.dtype))
            return self.net(x)

    class Rt:
        device = torch.device("cpu")
        amp = MixedPrecision("cpu", "O1")
        dist = training.distributed.env_dist_info()
        scalars = None
        work_dir = None

        @staticmethod
        def log(message):
            pass
    cfg = load_config(tiny_config)
    cfg["eval"]["fast"] = False
    pairs, _ = cityscapes.list_split(synthetic_root, "val")
    dataset = build_val_set(cfg, pairs[:2])
    torch.backends.cudnn.benchmark = True
    evaluator = Evaluator(dataset, cfg, Rt, ["c"] * 19, None)
    evaluator(Spy(NETWORKS["BiSeNetV1"](depth=18)), results_dir=str(tmp_path))
    assert seen and all(state == (False, False, torch.float32) for state in seen)
    assert torch.backends.cudnn.benchmark


def newest_checkpoint(work_dir):
    return max(work_dir.glob("iter_*.pth"), key=lambda p: int(p.stem.split("_")[1]))


@pytest.mark.e2e
@pytest.mark.parametrize("model", list(MODELS))
def test_every_models_benchmark_on_an_emulated_npu(model, tiny_configs):
    """The benchmark's fast paths take the device's memory format (contiguous on npu) and its
    half precision; the host-memory policy and ONNX Runtime's CPU row are for CPU runs."""
    proc = run([sys.executable, "-m", "common.tools.benchmark", "--model", model, "--config",
                tiny_configs[model], "--batch", "2", "--crop", "64", "64", "--infer-size", "64",
                "64", "--iters", "1", "--warmup", "0", "--only", "train,infer"],
               env=emulated_env("npu"))
    assert "fast: BN+ReLU folded + fp16" in proc.stdout and "channels_last" not in proc.stdout
    assert "not npu" in proc.stdout and "ONNX Runtime" not in proc.stdout


@pytest.mark.e2e
def test_mixed_precision_training_on_an_emulated_cuda_gpu(tiny_config, tmp_path):
    """CUDA's fused SGD and GradScaler, fp16 autocast and NHWC training, evaluation in fp32."""
    work = tmp_path / "work"
    run([sys.executable, os.path.join(REPO, "BiSeNetV1", "train.py"), "--config", tiny_config,
         "--work-dir", str(work), "--amp", "--channels-last"], env=emulated_env("cuda"))
    log = (work / "train_rank0.log").read_text()
    assert "O1 via torch.autocast, float16, loss scale dynamic" in log and "Iter(val)" in log
    state = torch.load(newest_checkpoint(work), weights_only=True)
    assert state["optimizer"]["state"] and "_growth_tracker" in state["scaler"]
    assert all(torch.isfinite(v).all() for v in state["state_dict"].values()
               if v.is_floating_point())


@pytest.mark.e2e
def test_benchmark_refuses_channels_last_on_an_emulated_npu():
    proc = run([sys.executable, "-m", "common.tools.benchmark", "--model", "BiSeNetV2",
                "--channels-last", "--only", "infer"], env=emulated_env("npu"), check=False)
    assert_user_error(proc, "--channels-last", "not supported on npu")


@pytest.mark.e2e
def test_compile_is_refused_where_inductor_generates_no_code(tiny_config, tmp_path):
    proc = run([sys.executable, os.path.join(REPO, "BiSeNetV1", "train.py"), "--config",
                tiny_config, "--work-dir", str(tmp_path / "w"), "--compile"],
               env=emulated_env("npu"), check=False)
    assert_user_error(proc, "--compile", "not supported on npu")
    assert not (tmp_path / "w").exists() or not any((tmp_path / "w").glob("*.pth"))


def test_nodes_whose_hostname_resolves_to_loopback_are_told_what_to_set(monkeypatch):
    from common import distributed
    from common.errors import UserError
    info = distributed.DistInfo(rank=0, world_size=16, local_rank=0)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    monkeypatch.delenv("GLOO_SOCKET_IFNAME", raising=False)
    monkeypatch.setattr(distributed.socket, "gethostbyname", lambda name: "127.0.1.1")
    with pytest.raises(UserError, match="GLOO_SOCKET_IFNAME"):
        distributed.check_gloo_reachable(info)
    monkeypatch.setenv("GLOO_SOCKET_IFNAME", "eth0")
    distributed.check_gloo_reachable(info)
    monkeypatch.delenv("GLOO_SOCKET_IFNAME")
    monkeypatch.setattr(distributed.socket, "gethostbyname", lambda name: "10.0.0.5")
    distributed.check_gloo_reachable(info)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "16")  # one node: nothing to reach
    monkeypatch.setattr(distributed.socket, "gethostbyname", lambda name: "127.0.1.1")
    distributed.check_gloo_reachable(info)


def test_a_loader_bound_run_is_told_once_with_the_remedy():
    said = []
    loop = training.TrainLoop.__new__(training.TrainLoop)
    loop.rt = type("Rt", (), {"log": staticmethod(said.append)})
    loop.cfg = {"data": {"num_workers": 4}}
    loop.start, loop._told_loader_bound = 0, False
    loop._warn_if_loader_bound(1, 10, {"data": 9.0, "time": 10.0})  # the workers' start
    loop._warn_if_loader_bound(11, 20, {"data": 1.0, "time": 10.0})
    assert said == []
    loop._warn_if_loader_bound(21, 30, {"data": 4.0, "time": 10.0})
    loop._warn_if_loader_bound(31, 40, {"data": 6.0, "time": 10.0})
    assert len(said) == 1 and "waited for data 40%" in said[0]
    assert all(fix in said[0] for fix in ("--prepare-data", "--workers (now 4", "--device-augment"))
