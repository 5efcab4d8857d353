"""Long runs survive faults (real processes, real signals, bounded in time): SIGKILL at random
points resumes bit for bit, SIGTERM/SIGINT stop with a checkpoint, checkpoints are never lost,
non-finite losses follow --nan-policy, distributed faults end in one-line errors, broken data
is refused at start, and hostile paths never execute."""
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch

from BiSeNetV1.bisenetv1 import BiSeNetV1
from conftest import BISENETV1, REPO, assert_user_error, run
from test_scripts import free_port, result_log, script

pytestmark = pytest.mark.e2e  # runs the project's commands: the full suite, not the unit tier

TRAIN = os.path.join(BISENETV1, "train.py")
MAX_ITERS = 10
# deterministic CPU run, a checkpoint every iteration, no evaluation
RUN_ARGS = ["--device", "cpu", "--no-validate", "--max_iters", str(MAX_ITERS), "--cfg-options",
            "runtime.deterministic=true", "runtime.log_interval=1",
            "runtime.checkpoint_interval=1"]


def command(tiny_config, work, *extra):
    return [sys.executable, TRAIN, "--config", tiny_config, "--work-dir", str(work),
            *RUN_ARGS[:5], *extra, *RUN_ARGS[5:]]


def start(cmd, env=None, log=None):
    return subprocess.Popen(cmd, cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1",
                                                 **(env or {})},
                            stdout=log or subprocess.DEVNULL, stderr=subprocess.STDOUT)


def log_size(path):
    return os.path.getsize(path) if os.path.isfile(path) else 0


def wait_for(path, text, proc, timeout=120, offset=0):
    """Block until ``text`` appears in the file at ``path`` after byte ``offset`` (True), or
    the process ends first (False)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if os.path.isfile(path):
            with open(path, errors="replace") as f:
                f.seek(offset)
                if text in f.read():
                    return True
        if proc.poll() is not None:
            return False
        time.sleep(0.05)
    raise AssertionError(f"{text!r} did not appear in {path} within {timeout} s")


def final_state(work):
    ckpt = torch.load(work / f"iter_{MAX_ITERS}.pth", weights_only=True)
    return {"model": ckpt["state_dict"], "optimizer": ckpt["optimizer"]["state"]}


def assert_bit_equal(a, b):
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], dict):
            assert_bit_equal(a[key], b[key])
        else:
            assert torch.equal(a[key], b[key]), key


@pytest.fixture(scope="module")
def reference(tiny_config, synthetic_root, tmp_path_factory):
    """The uninterrupted run."""
    work = tmp_path_factory.mktemp("uninterrupted")
    run(command(tiny_config, work))
    return work


def test_sigkill_at_random_points_resumes_bit_for_bit(reference, tiny_config, tmp_path):
    work, rng, kills = tmp_path / "killed", random.Random(8), 0
    log_path = work / "train_rank0.log"
    while kills < 3:
        offset = log_size(log_path)
        proc = start(command(tiny_config, work))
        target = rng.randint(kills * 3 + 1, kills * 3 + 3)
        if wait_for(log_path, f"Iter(train) [{target:>2}/{MAX_ITERS}]", proc, offset=offset):
            time.sleep(rng.uniform(0, 0.25))  # anywhere: compute, logging, checkpoint write
            proc.kill()
            kills += 1
        proc.wait(timeout=60)
    run(command(tiny_config, work))
    assert open(log_path).read().count("Resumed from") >= 2  # a kill may precede iter_1.pth
    assert_bit_equal(final_state(work), final_state(reference))


def test_kill_during_a_checkpoint_write_keeps_the_previous_one(tmp_path):
    """A writer killed between writing the temp file and renaming it leaves the old checkpoint
    and ``latest`` intact; the next run removes the orphaned temp file."""
    code = ("import os, sys, time, torch\n"
            "from common import checkpoint\n"
            "checkpoint.save_checkpoint(sys.argv[1], 1, {'x': torch.ones(3)})\n"
            "real = os.replace\n"
            "def slow(*a):\n"
            "    print('writing', flush=True); time.sleep(60)\n"
            "os.replace = slow\n"
            "checkpoint.save_checkpoint(sys.argv[1], 2, {'x': torch.zeros(3)})\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    from common.checkpoint import latest_checkpoint, load_file, remove_stale_temp_files
    assert latest_checkpoint(str(tmp_path)).endswith("iter_1.pth")
    assert not (tmp_path / "iter_2.pth").exists()
    assert torch.equal(load_file(str(tmp_path / "iter_1.pth"))["x"], torch.ones(3))
    assert [f for f in os.listdir(tmp_path) if f.startswith(".tmp-")]
    remove_stale_temp_files(str(tmp_path))
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp-")]


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_stops_with_a_checkpoint_and_resumes_exactly(reference, tiny_config, tmp_path,
                                                            sig, code):
    work = tmp_path / "stopped"
    out = tmp_path / "out.txt"
    with open(out, "w") as log:
        proc = start(command(tiny_config, work, "--workers", "1"), log=log)
        assert wait_for(work / "train_rank0.log", f"Iter(train) [ 3/{MAX_ITERS}]", proc)
        proc.send_signal(sig)
        assert proc.wait(timeout=60) == code
    text = open(work / "train_rank0.log").read()
    stopped_at = int(text.split(f"Stopped by {sig.name} after iteration ")[1].split(":")[0])
    assert 3 <= stopped_at < MAX_ITERS
    assert (work / "latest").read_text() == f"iter_{stopped_at}.pth"
    assert "Traceback" not in open(out).read()
    proc = run(command(tiny_config, work))
    assert f"at iteration {stopped_at}" in proc.stdout
    assert_bit_equal(final_state(work), final_state(reference))


def test_second_signal_exits_at_once(tiny_config, synthetic_root, tmp_path):
    """Iterations of ~2 s (512x512 crops, batch 4): the second SIGINT lands inside the one the
    first SIGINT is waiting for, and the process exits before finishing it."""
    work = tmp_path / "slow"
    cmd = [sys.executable, TRAIN, "--config", tiny_config, "--work-dir", str(work), "--device",
           "cpu", "--no-validate", "--max_iters", "50", "--cfg-options", "data.scale=[1024,512]",
           "data.crop_size=[512,512]", "data.batch_size=4", "runtime.log_interval=1"]
    proc = start(cmd)
    assert wait_for(work / "train_rank0.log", "Iter(train) [ 1/50]", proc)
    proc.send_signal(signal.SIGINT)
    time.sleep(1.3)  # past the duplicate-delivery window
    t0 = time.time()
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 130
    assert time.time() - t0 < 5
    assert "Stopped by" not in open(work / "train_rank0.log").read()


def test_keep_n_and_corrupted_latest_falls_back(reference, tiny_config, tmp_path):
    work = tmp_path / "keep"
    shutil.copytree(reference, work)
    for name in os.listdir(work):  # keep iterations 7..10
        if name.startswith("iter_") and int(name[5:].split(".")[0]) < 7:
            os.unlink(work / name)
    data = bytearray((work / "iter_10.pth").read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte: torch.load alone would not notice
    (work / "iter_10.pth").write_bytes(bytes(data))
    proc = run(command(tiny_config, work, "--keep", "2"))
    assert "Skipping" in proc.stdout and "SHA-256" in proc.stdout
    assert "at iteration 9" in proc.stdout and f"Iter(train) [{MAX_ITERS}/" in proc.stdout
    names = sorted(f for f in os.listdir(work) if f.endswith(".pth"))
    assert names == ["iter_10.pth", "iter_9.pth"]
    assert_bit_equal(final_state(work), final_state(reference))
    bad = tmp_path / "bad.pth"
    bad.write_bytes(bytes(data))
    shutil.copy(work / "iter_10.pth.sha256", str(bad) + ".sha256")
    proc = run([sys.executable, TRAIN, "--config", tiny_config, "--eval-only", "--checkpoint",
                str(bad), "--device", "cpu"], check=False)
    assert_user_error(proc, "bad.pth", "corrupted")


def test_prune_spares_the_checkpoint_latest_names(tmp_path):
    from common.checkpoint import LATEST, prune, save_checkpoint
    for it in (4, 5, 6):
        save_checkpoint(str(tmp_path), it, {"x": torch.ones(1)})
    (tmp_path / LATEST).write_text("iter_4.pth")  # e.g. after falling back past 5 and 6
    prune(str(tmp_path), 1)
    assert sorted(f for f in os.listdir(tmp_path) if f.endswith(".pth")) == \
        ["iter_4.pth", "iter_6.pth"]


def test_failed_write_says_so_and_keeps_the_previous(tmp_path, monkeypatch):
    import errno
    from common import checkpoint
    from common.errors import UserError
    checkpoint.save_checkpoint(str(tmp_path), 1, {"x": torch.ones(2)})

    def disk_full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(checkpoint.os, "replace", disk_full)
    with pytest.raises(UserError, match="No space left on device.*iter_1.pth is intact"):
        checkpoint.save_checkpoint(str(tmp_path), 2, {"x": torch.zeros(2)})
    monkeypatch.undo()
    assert checkpoint.latest_checkpoint(str(tmp_path)).endswith("iter_1.pth")
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp-") or "iter_2" in f]


def test_nan_policy_stop_and_skip(reference, tiny_config, tmp_path):
    """lr 1e8 makes the loss non-finite at iteration 3."""
    work = tmp_path / "nan"
    shutil.copytree(reference, work)
    before = {f: (work / f).read_bytes() for f in os.listdir(work) if f.endswith(".pth")}
    proc = run(command(tiny_config, tmp_path / "stop", "--lr", "1e8"), check=False)
    line = assert_user_error(proc, "iteration 3", "non-finite", "--nan-policy skip")
    assert "iter_2.pth" in line
    assert not (tmp_path / "stop" / "iter_3.pth").exists()
    proc = run(command(tiny_config, tmp_path / "skip", "--lr", "1e8", "--nan-policy", "skip"))
    assert "iteration 3: non-finite gradients" in proc.stdout and "step skipped" in proc.stdout
    state = torch.load(tmp_path / "skip" / f"iter_{MAX_ITERS}.pth", weights_only=True)
    params = dict(BiSeNetV1(18).named_parameters())
    assert all(torch.isfinite(state["state_dict"][k]).all() for k in params)
    assert {f: (work / f).read_bytes() for f in before} == before


UNCAUGHT_WITH_WORKERS = """
import sys
sys.path.insert(0, sys.argv[1])
import torch
from common.cityscapes import find_pairs
from common.config import load_config
from common.data import build_train_set
from common.distributed import DistInfo
from common.training import Runtime, build_train_loader
cfg = load_config(sys.argv[2])
cfg["data"]["num_workers"] = 2
dataset = build_train_set(cfg, find_pairs(sys.argv[3], "train"))
rt = Runtime("BiSeNetV1", torch.device("cpu"), DistInfo(), None, "", print)
batches = iter(build_train_loader(dataset, cfg, rt, 0))
next(batches)
raise RuntimeError("an error inside the run, loader workers alive")
"""


def test_an_error_inside_a_run_ends_it_loader_workers_included(tiny_config, synthetic_root):
    """An uncaught error while the training loader's workers are alive: the process exits
    (it used to wait for ever: the workers ignored the SIGTERM multiprocessing ends them with
    at exit)."""
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-c", UNCAUGHT_WITH_WORKERS, REPO, tiny_config,
                           synthetic_root], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "loader workers alive" in proc.stderr
    assert time.time() - t0 < 60


def test_batch_of_one_is_a_one_line_error(tiny_config, synthetic_root, tmp_path):
    proc = run(command(tiny_config, tmp_path / "b1", "--batch_size", "1"), check=False)
    assert_user_error(proc, "batch of 1 image per device", "--batch_size 2")
    assert not list((tmp_path / "b1").glob("iter_*.pth"))


def test_a_second_run_on_a_busy_work_dir_stops_and_names_the_first(tiny_config,
                                                                   synthetic_root, tmp_path):
    work = tmp_path / "busy"
    first = subprocess.Popen(command(tiny_config, work, "--max_iters", "100000"), cwd=REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(work / "train_rank0.log", "Iter(train)", first)
        with open(work / "train_rank0.log") as f:
            before = f.read()
        proc = run(command(tiny_config, work), check=False)
        assert_user_error(proc, f"work dir {work} is in use", f"pid {first.pid}",
                          "--work-dir")
        with open(work / "train_rank0.log") as f:  # the second run wrote nothing there
            assert not [l for l in f.read()[len(before):].splitlines() if "config" in l]
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=120)
    assert first.returncode == 143


def test_rank_size_left_in_the_environment_is_not_a_distributed_run(tiny_config,
                                                                    synthetic_root, tmp_path):
    proc = run(command(tiny_config, tmp_path / "rs", "--max_iters", "2", "--no-validate"),
               env={"RANK_SIZE": "2"}, timeout=300)
    assert "world_size: 1" in proc.stdout
    proc = run(command(tiny_config, tmp_path / "rs2"), env={"RANK_SIZE": "two", "RANK_ID": "0"},
               check=False)
    assert_user_error(proc, "RANK_SIZE='two' is not a whole number")


def test_dynamic_loss_scaler_skips_non_finite_steps():
    from common.amp import MixedPrecision
    amp = MixedPrecision("cpu", "O1")
    amp.scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    weight = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.SGD([weight], lr=0.1)
    assert amp.dynamic_scaling
    assert not amp.backward_and_step((weight * float("inf")).sum(), optimizer)
    assert torch.equal(weight.detach(), torch.ones(3)) and amp.scaler.get_scale() == 512.0
    optimizer.zero_grad()
    assert amp.backward_and_step(weight.sum(), optimizer)
    assert not torch.equal(weight.detach(), torch.ones(3))


def two_ranks(tiny_config, work, port, extra=({}, {}), max_iters="400"):
    """Two train.py processes joined by environment variables, no launcher."""
    procs = []
    for rank in (0, 1):
        env = {"RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank),
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
        cmd = [sys.executable, TRAIN, "--config", tiny_config, "--work-dir", str(work),
               "--device", "cpu", "--no-validate", "--max_iters", max_iters,
               "--cfg-options", "runtime.log_interval=1", *extra[rank].get("args", [])]
        procs.append(subprocess.Popen(cmd, cwd=REPO, env={**os.environ, **env},
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
    return procs


def test_a_dead_rank_stops_the_others_quickly(tiny_config, synthetic_root, tmp_path):
    rank0, rank1 = two_ranks(tiny_config, tmp_path, free_port())
    assert wait_for(tmp_path / "train_rank1.log", "Iter(train) [  2/400]", rank1)
    rank1.kill()
    t0 = time.time()
    _, err = rank0.communicate(timeout=120)
    assert rank0.returncode == 2 and time.time() - t0 < 60
    lines = err.strip().splitlines()
    assert lines[-1].startswith("error: rank 0: a distributed operation failed")
    assert "another process probably died" in lines[-1]
    rank1.communicate()


# Joins a 2-process gloo group as train.py does (DDP, a step, an object gather and a barrier
# as a checkpoint does) inside a function, as the entry points do, then ends. An exit hook
# registered before joining runs after common.distributed's (atexit is last in, first out)
# and prints how many threads the process had before joining and has then.
GLOO_EXIT = """
import atexit, os, sys
import torch
from common import distributed
def threads():
    return len(os.listdir("/proc/self/task"))
before = threads()
atexit.register(lambda: print(before, threads(), flush=True))
def main(rank):
    distributed.init_distributed(distributed.DistInfo(rank=rank, world_size=2), "cpu")
    model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(3, 3))
    model(torch.ones(2, 3)).sum().backward()
    distributed.gather_objects(rank)
    distributed.barrier()
    distributed.shutdown()
main(int(sys.argv[1]))
"""


def test_gloo_threads_end_before_the_interpreter_finalizes():
    """gloo's worker threads must be joined at exit while Python is alive, with the GIL free:
    one still freeing a finished collective when the interpreter finalizes aborts a run that
    succeeded (SIGABRT); joined with the GIL held (DDP's reducer freeing the group), it
    deadlocks."""
    port = free_port()
    procs = [subprocess.Popen([sys.executable, "-c", GLOO_EXIT, str(rank)], cwd=REPO,
                              env={**os.environ, "MASTER_ADDR": "127.0.0.1",
                                   "MASTER_PORT": str(port), "PYTHONPATH": REPO},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for rank in (0, 1)]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        before, after = map(int, out.split())
        assert after == before, f"{after - before} thread(s) of the process group outlive it"


def test_mismatched_configs_are_refused_at_start(tiny_config, synthetic_root, tmp_path):
    procs = two_ranks(tiny_config, tmp_path, free_port(),
                      ({}, {"args": ["data.batch_size=3"]}), max_iters="2")
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 2
        assert "rank 1 runs a different config from rank 0 (data.batch_size: 3 vs 2)" in err
    assert not (tmp_path / "iter_1.pth").exists()


def test_a_run_changing_flag_on_one_rank_is_refused(tiny_config, synthetic_root, tmp_path):
    """Flags that change a run (here --channels-last) are part of the compared config."""
    procs = two_ranks(tiny_config, tmp_path, free_port(),
                      ({}, {"args": ["--channels-last"]}), max_iters="2")
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 2
        assert "(runtime.channels_last: True vs False)" in err


def test_busy_master_port(tiny_config, synthetic_root, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        rank0, rank1 = two_ranks(tiny_config, tmp_path, port, max_iters="2")
        rank1.kill()
        _, err = rank0.communicate(timeout=120)
        assert rank0.returncode == 2 and f"MASTER_PORT {port} is busy" in err
        rank1.communicate()
        proc = script("train_performance_8p.sh", f"--config={tiny_config}", "--max_iters=4",
                      "--device=cpu", f"--master_port={port}", env={"RANK_SIZE": "2"})
        assert f"MASTER_PORT {port} is busy; this single-node run uses" in proc.stderr
        assert dict(result_log(0, "BiSeNetV1_bs2_2p_perf"))["RankSize"] == "2"
        proc = script("train_performance_8p.sh", f"--config={tiny_config}", "--device=cpu",
                      f"--master_port={port}", "--nnodes=2", env={"RANK_SIZE": "1"},
                      check=False)
        assert_user_error(proc, f"--master_port={port} is busy")


def broken_copy(synthetic_root, root):
    """The synthetic Cityscapes with four kinds of damage; returns the damaged files."""
    import numpy as np
    from PIL import Image
    shutil.copytree(synthetic_root, root)
    labels = sorted((root / "gtFine" / "train").rglob("*_labelTrainIds.png"))
    images = sorted((root / "leftImg8bit" / "train").rglob("*_leftImg8bit.png"))
    os.unlink(labels[0])                                   # image without a label
    data = images[1].read_bytes()
    images[1].write_bytes(data[: len(data) // 3])          # truncated image
    small = np.array(Image.open(labels[2]))[:64, :64]
    Image.fromarray(small).save(labels[2])                 # size mismatch
    bad = np.array(Image.open(labels[3]))
    bad[0, 0] = 77
    Image.fromarray(bad).save(labels[3])                   # value outside 0..18 and not 255
    return [images[0].name, images[1].name, labels[2].name, labels[3].name]


def test_check_data_reports_every_problem_and_training_refuses(tiny_config, synthetic_root,
                                                               tmp_path):
    root = tmp_path / "broken data"
    damaged = broken_copy(synthetic_root, root)
    proc = run([sys.executable, TRAIN, "--config", tiny_config, "--data_path", str(root),
                "--work-dir", str(tmp_path / "w"), "--check-data"], check=False)
    assert proc.returncode == 2 and "4 problem(s)" in proc.stderr
    report = [l for l in proc.stdout.splitlines() if "data problem:" in l]
    assert len(report) == 4
    for name, kind in zip(damaged, ["has no label", "unreadable or truncated", "but its label",
                                    "has values 77 outside 0..18"]):
        assert any(name in l and kind in l for l in report), (name, kind, report)
    proc = run([sys.executable, TRAIN, "--config", tiny_config, "--data_path", str(root),
                "--work-dir", str(tmp_path / "w"), "--device", "cpu"], check=False)
    assert_user_error(proc, "4 problem(s)")
    assert "Iter(train)" not in proc.stdout and not (tmp_path / "w" / "iter_3.pth").exists()
    clean = run([sys.executable, TRAIN, "--config", tiny_config, "--check-data"])
    assert "no problems" in clean.stdout


def test_hostile_data_path_is_data_not_code(tiny_config, synthetic_root, tmp_path):
    root = tmp_path / "my data $(touch PWNED); `touch PWNED2` & x"
    shutil.copytree(synthetic_root, root)
    proc = script("train_performance_1p.sh", f"--config={tiny_config}", f"--data_path={root}",
                  "--max_iters=4", "--device=cpu", f"--work_dir={tmp_path / 'w ork'}")
    assert "Final Performance images/sec" in proc.stdout
    for folder in (REPO, BISENETV1, str(tmp_path), os.getcwd()):
        assert not any(os.path.exists(os.path.join(folder, n)) for n in ("PWNED", "PWNED2"))


def test_a_file_broken_during_training_is_named(tiny_config, synthetic_root, tmp_path):
    """Damage after the start-up check (e.g. a failing disk) surfaces from a loader worker as
    one error naming the file."""
    from common.cityscapes import find_pairs
    from common.config import load_config
    from common.data import build_train_set
    from common.training import next_batch
    from common.errors import UserError
    root = tmp_path / "cs"
    shutil.copytree(synthetic_root, root)
    dataset = build_train_set(load_config(tiny_config), find_pairs(str(root), "train"))
    broken = dataset.pairs[0][0]
    data = open(broken, "rb").read()
    open(broken, "wb").write(data[: len(data) // 4])
    loader = torch.utils.data.DataLoader(dataset, sampler=[(0, 1)], batch_size=None,
                                         num_workers=1)
    with pytest.raises(UserError, match=os.path.basename(broken)):
        next_batch(iter(loader))
