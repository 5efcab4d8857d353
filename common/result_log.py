"""Write the ModelZoo result log from a training / evaluation log (the Ascend ModelZoo script contract).

    python -m common.result_log --log test/output/0/train_0.log --network BiSeNetV1 \
        --case perf --out-dir test/output/0 --e2e-seconds 123

Writes ``${CaseName}.log`` (``Key = value``, in the contract's order, then the evaluation
metrics and inference mode when there are any) and ``train_${CaseName}_loss.txt`` (one loss per logged
iteration), and prints ``Final Performance images/sec``, ``Final Train Accuracy`` and
``E2E Training Duration sec``. CaseName = ``${Network}_bs${BatchSize}_${RankSize}p_${case}``,
BatchSize being the global batch (per device x devices).
"""
import os
import platform
import sys

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common.errors import ArgParser, UserError, user_errors  # noqa: E402
from common.logfmt import parse_log  # noqa: E402

CASES = ("perf", "acc", "eval")


def _number(value):
    return "None" if value != value else f"{value:.2f}"


def result_fields(parsed, network, case, e2e_seconds):
    """The ordered (key, value) pairs of the result log."""
    run = parsed["run"]
    if run is None:
        raise UserError("the training log has no 'Run' line: the run failed before it started; "
                        "read the log above for the error")
    world = int(run["world_size"])
    batch = int(run["batch_per_device"]) * world
    last_val = parsed["val"][-1] if parsed["val"] else None
    if case == "eval":
        if last_val is None:
            raise UserError("the evaluation log has no 'Iter(val)' line: evaluation failed; "
                            "read the log above for the error")
        fps = last_val["images/s"]
        step_ms = 1000.0 / fps if fps else float("nan")
        loss = "None"
    else:
        summary = parsed["summary"]
        if summary is None and case == "perf":
            raise UserError("the training log has no 'Summary' line: training did not finish "
                            "or ran no iteration past warm-up; read the log above")
        # a full run resumed when already complete trains nothing: no speed to report
        fps, step_ms = ((summary["images/s"], summary["iter_time_ms"]) if summary
                        else (float("nan"), float("nan")))
        loss = f"{parsed['train'][-1]['loss']:.4f}" if parsed["train"] else "None"
    case_name = f"{network}_bs{batch}_{world}p_{case}"
    fields = [("Network", network), ("RankSize", world), ("BatchSize", batch),
              ("DeviceType", platform.machine()), ("CaseName", case_name),
              ("ActualFPS", _number(fps)), ("TrainingTime", _number(step_ms)),
              ("TrainAccuracy", f"{last_val['mIoU']:.2f}" if last_val else "None"),
              ("ActualLoss", loss), ("E2ETrainingTime", f"{e2e_seconds:.0f}")]
    if last_val:
        fields += [("mIoU", f"{last_val['mIoU']:.2f}"), ("aAcc", f"{last_val['aAcc']:.2f}"),
                   ("mAcc", f"{last_val['mAcc']:.2f}"), ("EvalMode", last_val["mode"])]
    return case_name, fields


def main(argv=None):
    p = ArgParser(description="Write the ModelZoo result log.")
    p.add_argument("--log", required=True)
    p.add_argument("--network", required=True)
    p.add_argument("--case", required=True, choices=CASES)
    p.add_argument("--out-dir", required=True)
    p.add_argument("--e2e-seconds", type=float, required=True)
    args = p.parse_args(argv)
    if not os.path.isfile(args.log):
        raise UserError(f"training log {args.log} does not exist")
    with open(args.log, errors="replace") as f:
        parsed = parse_log(f)
    case_name, fields = result_fields(parsed, args.network, args.case, args.e2e_seconds)
    with open(os.path.join(args.out_dir, f"train_{case_name}_loss.txt"), "w") as f:
        f.writelines(f"{r['loss']:.4f}\n" for r in parsed["train"])
    with open(os.path.join(args.out_dir, f"{case_name}.log"), "w") as f:
        f.writelines(f"{k} = {v}\n" for k, v in fields)
    values = dict(fields)
    print(f"Final Performance images/sec : {values['ActualFPS']}")
    print(f"Final Train Accuracy : {values['TrainAccuracy']}")
    print(f"E2E Training Duration sec : {values['E2ETrainingTime']}")


if __name__ == "__main__":
    with user_errors():
        main()
