"""Terminal view of a run whose output goes to a ModelZoo log file.

    python3 common/tools/progress.py LOG --pid PID [--label BiSeNetV1]

The launch scripts send train.py's output to ``test/output/<id>/train_<id>.log`` (the format
the parsers read). When the script's output is a terminal they also start this follower: it
reads the log as it grows, until process PID ends, and prints one short line per event, so a
long run never looks hung: training (iteration, loss, images/s, ETA from the time per
iteration), checkpoints, the start-up data check and evaluation (their progress bars, with
ETA), the evaluation result, errors. The log file itself is not touched.
"""
import os
import re
import sys
import time

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from common.errors import ArgParser, user_errors  # noqa: E402
from common.logfmt import parse_log  # noqa: E402

BAR = re.compile(r"^(?P<desc>[\w ()-]+):\s+(?P<pct>\d+)%\|.*\| (?P<done>\d+)/(?P<total>\d+) "
                 r"\[(?P<elapsed>[\d:]+)<(?P<eta>[\d:?]+)")


def clock(seconds):
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def describe(line, label):
    """The terminal line for one log line, or None for lines the view leaves out."""
    text = line.split(" - ", 1)[1] if re.match(r"^\d{4}-\d\d-\d\d ", line) else line
    parsed = parse_log([text])
    if parsed["train"]:
        r = parsed["train"][0]
        eta = (r["max_iters"] - r["iter"]) * r.get("time", 0.0)
        return (f"[{label}] train {r['iter']}/{r['max_iters']}  loss {r.get('loss', 0):.4f}  "
                f"{r.get('images/s', 0):.1f} images/s  ETA {clock(eta)}")
    if parsed["val"]:
        r = parsed["val"][0]
        return (f"[{label}] eval ({r['mode']}) at iteration {r['iter']}: mIoU {r['mIoU']:.2f}  "
                f"aAcc {r['aAcc']:.2f}  mAcc {r['mAcc']:.2f}")
    bar = BAR.match(text.strip().split("\r")[-1])
    if bar:
        return (f"[{label}] {bar['desc']} {bar['done']}/{bar['total']}  ETA "
                f"{bar['eta'] if '?' not in bar['eta'] else '...'}")
    for prefix in ("No --data_path", "Resumed from", "Saved checkpoint", "Training ",
                   "Evaluating ", "Run already complete", "Stopped by", "error:", "data problem:",
                   "Traceback", "Summary"):
        if text.startswith(prefix):
            return f"[{label}] {text.strip()}"
    return None


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def follow(path, pid, label, poll_s=0.5, out=sys.stdout):
    """Print the view of ``path`` until process ``pid`` has ended and the log is read."""
    position, pending, last = 0, "", None
    while True:
        running = alive(pid)
        if os.path.isfile(path):
            with open(path, errors="replace") as f:
                f.seek(position)
                chunk = f.read()
                position = f.tell()
            pending += chunk
            *complete, pending = re.split(r"[\r\n]", pending)
            for line in complete:
                view = describe(line, label) if line.strip() else None
                if view and view != last:  # progress bars repeat their state
                    print(view, file=out, flush=True)
                    last = view
        if not running:
            return
        time.sleep(poll_s)


def main(argv=None):
    p = ArgParser(description="Follow a run's log in the terminal.")
    p.add_argument("log")
    p.add_argument("--pid", type=int, required=True, help="follow until this process ends")
    p.add_argument("--label", default="run")
    args = p.parse_args(argv)
    follow(args.log, args.pid, args.label)


if __name__ == "__main__":
    with user_errors():
        main()
