"""The fast paths compute the same function: BN folding within 1e-4 for every network,
channels_last + bf16 within AMP tolerance of fp32 eager, and the benchmark entry point runs."""
import copy
import importlib.util
import json
import sys

import pytest
import torch

from common.fuse import fold_batchnorm
from conftest import MODELS, NETWORKS, REPO, run


def network(model_name):
    torch.manual_seed(0)
    net = NETWORKS[model_name]()
    g = torch.Generator().manual_seed(1)
    for module in net.modules():  # trained-looking BN statistics and affine parameters
        if isinstance(module, torch.nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            module.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            module.bias.data.copy_(torch.randn(n, generator=g) * 0.1)
    return net.eval()


@pytest.mark.parametrize("model_name", list(MODELS))
def test_folded_bn_matches_unfolded(model_name):
    net = network(model_name)
    folded = copy.deepcopy(net)
    count = fold_batchnorm(folded)
    bns = sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    left = sum(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert count > 0.9 * bns and left == bns - count  # only BNs after pooling remain
    x = torch.randn(1, 3, 96, 128, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected, got = net(x), folded(x)
    scale = expected.abs().max()
    assert (got - expected).abs().max() <= 1e-4 * max(1.0, float(scale))
    fast = folded.to(memory_format=torch.channels_last)
    with torch.no_grad():
        cl = fast(x.contiguous(memory_format=torch.channels_last))
    assert (cl - expected).abs().max() <= 1e-4 * max(1.0, float(scale))


def test_fold_refuses_training_mode():
    with pytest.raises(ValueError, match="eval-mode"):
        fold_batchnorm(network("BiSeNetV2").train())


def training_step(net, fast_layout, opt_level):
    """Loss and gradients of one training step (same dropout masks every time)."""
    from common.amp import MixedPrecision
    from common.losses import heads_cross_entropy
    model, x = copy.deepcopy(net), torch.randn(4, 3, 96, 96,
                                               generator=torch.Generator().manual_seed(3))
    label = torch.randint(0, 19, (4, 96, 96), generator=torch.Generator().manual_seed(4))
    if fast_layout:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    amp = MixedPrecision("cpu", opt_level)
    torch.manual_seed(5)
    with amp.autocast():
        outputs = model(x)
    loss, _ = heads_cross_entropy(outputs, label, dict.fromkeys(outputs, 1.0))
    loss.backward()
    return float(loss.detach()), {n: p.grad for n, p in model.named_parameters()
                                  if p.grad is not None}


@pytest.mark.e2e
def test_fast_training_step_computes_the_same_function():
    net = network("BiSeNetV2").train()
    loss, grads = training_step(net, False, "O0")
    cl_loss, cl_grads = training_step(net, True, "O0")  # channels_last: same maths, fp32
    assert cl_loss == pytest.approx(loss, rel=1e-5)
    head = "decode_head.conv_seg.weight"
    torch.testing.assert_close(cl_grads[head], grads[head], rtol=1e-4, atol=1e-5)
    bf_loss, bf_grads = training_step(net, True, "O1")  # the CPU fast path: + bf16 autocast
    assert bf_loss == pytest.approx(loss, rel=0.02)  # bf16 keeps 8 bits of mantissa
    cosine = torch.nn.functional.cosine_similarity(bf_grads[head].flatten(),
                                                   grads[head].flatten(), dim=0)
    assert cosine > 0.95, float(cosine)  # measured 0.98-0.99


@pytest.mark.e2e
def test_benchmark_entry_point_writes_its_table(tmp_path, synthetic_root):
    out = tmp_path / "bench.json"
    proc = run([sys.executable, "-m", "common.tools.benchmark", "--model", "BiSeNetV2", "--device",
                "cpu", "--batch", "2", "--crop", "64", "64", "--infer-size", "32", "64",
                "--iters", "1", "--warmup", "1", "--workers", "0", "--json", str(out)],
               cwd=REPO)
    record = json.loads(out.read_text())
    sections = [r["section"] for r in record["rows"]]
    assert sections.count("train") == 2 and sections.count("infer") == 3
    assert sections.count("e2e") == 2 and sections.count("data") == 5  # PNG, decoded, 3 decoders
    assert "decoded" in record["rows"][sections.index("data") + 1]["variant"]
    assert record["cpu"].startswith("CPU ")
    assert all(r["images_per_s"] > 0 for r in record["rows"])
    assert record["train"]["step_gflops"] > 0
    assert "ONNX Runtime" in proc.stdout and "TFLOP/s" in proc.stdout
    proc = run([sys.executable, "-m", "common.tools.benchmark", "--model", "BiSeNetV2", "--batch",
                "1", "--only", "train", "--crop", "64", "64", "--device", "cpu"], cwd=REPO,
               check=False)
    assert proc.returncode == 2 and "--batch 1 is too small" in proc.stderr


@pytest.mark.e2e
def test_mmseg_comparison_needs_mmseg_and_says_so():
    if importlib.util.find_spec("mmseg") is not None:
        pytest.skip("mmseg is installed here: the comparison would run")
    proc = run([sys.executable, "-m", "common.tools.bench_vs_mmseg", "--models", "BiSeNetV2"],
               cwd=REPO, check=False)
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error: mmsegmentation is "
                                                                   "not installed")
    proc = run([sys.executable, "-m", "common.tools.benchmark", "--model", "BiSeNetV2", "--only",
                "bogus"], cwd=REPO, check=False)
    assert proc.returncode == 2 and "--only bogus is unknown" in proc.stderr


@pytest.mark.parametrize("precision, native, faster, expected", [
    ("amp", False, "O0", "O1"), ("fp32", True, "O1", "O0"),  # as asked
    ("auto", False, "O1", "O0"),  # no native bf16: emulated bf16 is never tried
    ("auto", True, "O1", "O1"), ("auto", True, "O0", "O0")])  # measured: the faster one
def test_fast_path_precision_is_chosen_per_machine(precision, native, faster, expected,
                                                   monkeypatch):
    import time
    from types import SimpleNamespace

    from common.tools import benchmark
    monkeypatch.setattr(benchmark, "native_bf16", lambda: native)
    timed = []

    def candidate(level):
        timed.append(level)
        return lambda: time.sleep(0 if level == faster else 0.05)
    args = SimpleNamespace(precision=precision)
    assert benchmark.fast_level(torch.device("cpu"), args, candidate) == expected
    assert timed == (["O0", "O1"] if precision == "auto" and native else [])
    assert benchmark.fast_level(torch.device("cuda"), args, candidate) == "O1"  # accelerators
