"""What a person at a terminal sees: a launch script under a pseudo-terminal shows progress
lines (iteration, loss, images/s, ETA) while training runs; the ModelZoo log keeps its exact
format; without a terminal (CI, pipes) the script stays quiet."""
import os
import pty
import select
import subprocess
import time

import pytest

from common.logfmt import parse_log
from conftest import BISENETV1, REPO, run

pytestmark = pytest.mark.e2e  # runs the project's commands: the full suite, not the unit tier

LOG = os.path.join(BISENETV1, "test", "output", "0.running", "train_0.log")


def test_progress_lines_appear_while_training_runs(tiny_config, synthetic_root, tmp_path):
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        ["bash", "test/train_full_1p.sh", f"--config={tiny_config}", "--max_iters=30",
         f"--work_dir={tmp_path / 'work'}", "--device=cpu"],
        cwd=BISENETV1, stdin=slave, stdout=slave, stderr=slave, close_fds=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    os.close(slave)
    seen, buffer, log_when_first_shown = [], "", None
    deadline = time.time() + 600
    while time.time() < deadline:
        ready, _, _ = select.select([master], [], [], 1.0)
        if not ready:
            if proc.poll() is not None:
                break
            continue
        try:
            chunk = os.read(master, 4096).decode(errors="replace")
        except OSError:  # the terminal closed: every process of the script has ended
            break
        buffer += chunk
        *lines, buffer = buffer.replace("\r", "\n").split("\n")
        for line in lines:
            seen.append(line)
            if log_when_first_shown is None and "[BiSeNetV1] train 2/30" in line:
                with open(LOG) as f:  # what the trainer had written when the line showed
                    log_when_first_shown = f.read()
    proc.wait(timeout=60)
    os.close(master)
    assert proc.returncode == 0, "\n".join(seen[-20:])
    text = "\n".join(seen)
    assert seen[0].startswith("No --data_path: this run uses the synthetic Cityscapes dataset")
    assert "--data_path=/path/to/cityscapes" in seen[0]
    progress = [l for l in seen if l.startswith("[BiSeNetV1] train ")]
    assert len(progress) == 15 and all("images/s  ETA " in l for l in progress), progress
    assert log_when_first_shown is not None and "Summary" not in log_when_first_shown
    assert "Iter(train) [30/30]" not in log_when_first_shown  # training was still running
    assert "[BiSeNetV1] eval (whole) at iteration 30: mIoU" in text
    assert text.rstrip().splitlines()[-1].startswith("E2E Training Duration sec : ")
    with open(os.path.join(BISENETV1, "test", "output", "0", "train_0.log")) as f:
        log = f.read()
    assert "[BiSeNetV1]" not in log and "\x1b[" not in log  # the terminal view stays out
    parsed = parse_log(log.splitlines())
    assert [r["iter"] for r in parsed["train"]] == list(range(2, 31, 2))
    assert parsed["summary"] and parsed["run"] and len(parsed["val"]) == 5  # every 6 iterations


def test_no_terminal_no_progress_view(tiny_config, synthetic_root, tmp_path):
    proc = run(["bash", "test/train_performance_1p.sh", f"--config={tiny_config}",
                "--max_iters=4", "--device=cpu"], cwd=BISENETV1)
    assert "[BiSeNetV1]" not in proc.stdout + proc.stderr
    assert proc.stdout.startswith("No --data_path: this run uses the synthetic Cityscapes")


def test_install_and_quickstart_say_what_they_do():
    """The quick start's steps name what they do and how long they take (its end to end run
    is measured for the README, not in the suite)."""
    with open(os.path.join(REPO, "quickstart.sh")) as f:
        text = f.read()
    assert text.count('step ') >= 5 and "about 1-2 min" in text
    proc = run(["bash", os.path.join(REPO, "install.sh")])
    assert "install.sh: requirements.txt (about 1 min" in proc.stdout
