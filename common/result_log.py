"""Write the ModelZoo result log from a training / evaluation log (the Ascend ModelZoo script
contract, as the real ModelZoo-PyTorch scripts of these models write it).

    python3 common/result_log.py --log test/output/0/train_0.log --network BiSeNetV1 \
        --case acc --accuracy-key mIoU --out-dir test/output/0 --e2e-seconds 123

Training cases (``perf``, ``acc``) write ``${CaseName}.log`` with one ``Key = value`` per line:
Network, RankSize, BatchSize (per device), DeviceType, CaseName, ActualFPS, TrainingTime,
``<accuracy key>`` (``mIoU`` in the real BiSeNetV1 / PSPNet scripts, ``TrainAccuracy`` in
ICNet's), ActualLoss, E2ETrainingTime, then the evaluation figures when there are any; and
``train_${CaseName}_loss.txt`` (one loss per logged iteration). The ``eval`` case writes the
layout of the real validation scripts (PSPNet's train_val_8p.sh): Network, RankSize, BatchSize,
DeviceType, CaseName, ActualFPS, ValTime (ms per image), mIoU, E2EValTime, then aAcc, mAcc and
the inference mode. A value that is not known (no evaluation in a performance run, no speed
for a run no longer than its warm-up) is left empty, never ``None``. It prints
``Final Performance images/sec``, ``Final Train Accuracy`` and ``E2E Training Duration sec``.
CaseName = ``${Network}_bs${BatchSize}_${RankSize}p_${case}`` (per-device batch, as
``PSPNet_bs16_8p_acc.log``).
"""
import os
import platform
import sys

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common.checkpoint import atomic_write_bytes  # noqa: E402
from common.errors import ArgParser, UserError, user_errors  # noqa: E402
from common.logfmt import parse_log  # noqa: E402

CASES = ("perf", "acc", "eval")


ACCURACY_KEYS = ("TrainAccuracy", "mIoU")


def _number(value):
    return "" if value is None or value != value else f"{value:.2f}"


def result_fields(parsed, network, case, e2e_seconds, accuracy_key="TrainAccuracy"):
    """The ordered (key, value) pairs of the result log."""
    run = parsed["run"]
    if run is None:
        raise UserError("the training log has no 'Run' line: the run failed before it started; "
                        "read the log above for the error")
    world, batch = int(run["world_size"]), int(run["batch_per_device"])
    last_val = parsed["val"][-1] if parsed["val"] else None
    miou = _number(last_val["mIoU"]) if last_val else ""
    case_name = f"{network}_bs{batch}_{world}p_{case}"
    head = [("Network", network), ("RankSize", world), ("BatchSize", batch),
            ("DeviceType", platform.machine()), ("CaseName", case_name)]
    evaluated = ([("aAcc", _number(last_val["aAcc"])), ("mAcc", _number(last_val["mAcc"])),
                  ("EvalMode", last_val["mode"])] if last_val else [])
    if case == "eval":
        if last_val is None:
            raise UserError("the evaluation log has no 'Iter(val)' line: evaluation failed; "
                            "read the log above for the error")
        fps = last_val["images/s"]
        return case_name, head + [("ActualFPS", _number(fps)),
                                  ("ValTime", _number(1000.0 / fps if fps else None)),
                                  ("mIoU", miou), ("E2EValTime", f"{e2e_seconds:.0f}")] + evaluated
    summary = parsed["summary"]
    if summary is None and case == "perf":
        raise UserError("the training log has no 'Summary' line: training did not finish "
                        "or ran no iteration past warm-up; read the log above")
    # a full run resumed when already complete trains nothing: no speed to report
    fps, step_ms = (summary["images/s"], summary["iter_time_ms"]) if summary else (None, None)
    loss = f"{parsed['train'][-1]['loss']:.4f}" if parsed["train"] else ""
    fields = head + [("ActualFPS", _number(fps)), ("TrainingTime", _number(step_ms)),
                     (accuracy_key, miou), ("ActualLoss", loss),
                     ("E2ETrainingTime", f"{e2e_seconds:.0f}")]
    if last_val and accuracy_key != "mIoU":
        fields.append(("mIoU", miou))
    return case_name, fields + evaluated


def main(argv=None):
    p = ArgParser(description="Write the ModelZoo result log.")
    p.add_argument("--log", required=True)
    p.add_argument("--network", required=True)
    p.add_argument("--case", required=True, choices=CASES)
    p.add_argument("--accuracy-key", dest="accuracy_key", default="TrainAccuracy",
                   choices=ACCURACY_KEYS, help="result-log key 8 of training cases")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--e2e-seconds", type=float, required=True)
    args = p.parse_args(argv)
    if not os.path.isfile(args.log):
        raise UserError(f"training log {args.log} does not exist")
    with open(args.log, errors="replace") as f:
        parsed = parse_log(f)
    case_name, fields = result_fields(parsed, args.network, args.case, args.e2e_seconds,
                                      args.accuracy_key)
    losses = "".join(f"{r['loss']:.4f}\n" for r in parsed["train"]).encode()
    atomic_write_bytes(os.path.join(args.out_dir, f"train_{case_name}_loss.txt"),
                       lambda f: f.write(losses))
    text = "".join(f"{k} = {v}\n" for k, v in fields).encode()
    atomic_write_bytes(os.path.join(args.out_dir, f"{case_name}.log"), lambda f: f.write(text))
    values = dict(fields)
    accuracy = values["mIoU"] if args.case == "eval" else values[args.accuracy_key]
    print(f"Final Performance images/sec : {values['ActualFPS']}")
    print(f"Final Train Accuracy : {accuracy}")
    print(f"E2E Training Duration sec : {values.get('E2ETrainingTime', values.get('E2EValTime'))}")


if __name__ == "__main__":
    with user_errors():
        main()
