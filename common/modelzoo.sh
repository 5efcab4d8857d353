# Shared body of the ModelZoo launch scripts (test/train_{full,performance,eval}_{1p,8p}.sh).
# A script sources this file and calls:  zoo_main <full|perf|eval> <1p|8p> "$@"
# train.py picks the recipe (the smoke config and the synthetic dataset without --data_path)
# and the work dir (work_dirs/<config name>) unless --config / --work_dir say otherwise.
# Arguments are --key=value; see zoo_usage. Environment: ASCEND_DEVICE_ID (default 0),
# RANK_SIZE (processes per node for 8p scripts, default 8), MASTER_ADDR / MASTER_PORT.

ZOO_COMMON_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ZOO_REPO_DIR="$(dirname "$ZOO_COMMON_DIR")"
ZOO_PERF_ITERS=${ZOO_PERF_ITERS:-200}                     # performance run, real data
ZOO_PERF_ITERS_SYNTHETIC=${ZOO_PERF_ITERS_SYNTHETIC:-30}  # performance run, synthetic data

zoo_usage() {
  cat <<USAGE
usage: bash test/$(basename "$0") [--key=value ...]
  --data_path=DIR        dataset root (default: synthetic dataset, generated once)
  --config=FILE          recipe (default: the model's recipe; the synthetic smoke config
                         when --data_path is not given)
  --batch_size=N         images per device        --max_iters=N   iterations
  --precision_mode=O0|O1|O2 (also fp32, amp)      --loss_scale=dynamic|FLOAT
  --device=auto|npu|cuda|cpu                      --device_id=N   (sets ASCEND_DEVICE_ID)
  --device_list=0,1,...  device ids of the local ranks
  --workers=N            data loader workers per device
  --work_dir=DIR         checkpoints (full/eval default: work_dirs/<config name>)
  --checkpoint=FILE      checkpoint to evaluate (eval scripts; default: work dir's latest)
  --pretrained=FILE      ImageNet backbone weights
  --eval_mode=whole|slide  --slide_crop=H,W  --slide_stride=H,W   evaluation inference
  --tta                  multi-scale + flip test-time augmentation (evaluation)
  --show_dir=DIR         input | ground truth | prediction | error map per evaluated image
  --tensorboard          also log scalars to TensorBoard (needs the tensorboard package)
  --nnodes=N --node_rank=R --master_addr=HOST --master_port=PORT   (8p scripts, multi-node)
Outputs go to test/output/\${ASCEND_DEVICE_ID}/ (the previous run's folder is kept as .prev);
full runs also leave curves.png there. Dashes and underscores in keys are interchangeable.
USAGE
}

zoo_die() { echo "error: $*" >&2; exit 2; }

# Node 0 hosts the rendezvous on master_port. Busy: a single-node run takes a free port and
# says so; a multi-node run stops (the other nodes were told this port).
zoo_check_port() {
  if python3 - "$master_port" <<'PY'
import socket, sys
with socket.socket() as s:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("", int(sys.argv[1])))
    except OSError:
        sys.exit(1)
PY
  then return 0; fi
  if [ "$nnodes" != 1 ]; then
    zoo_die "--master_port=$master_port is busy on this node; pass a free port to every node"
  fi
  local busy="$master_port"
  master_port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])')"
  echo "note: MASTER_PORT $busy is busy; this single-node run uses $master_port" >&2
}

zoo_parse() {
  data_path="" config="" batch_size="" max_iters="" precision_mode="" loss_scale=""
  device="auto" device_list="" workers="" work_dir="" checkpoint="" pretrained=""
  eval_mode="" slide_crop="" slide_stride="" show_dir="" tta="" tensorboard=""
  nnodes="1" node_rank="0" master_addr="${MASTER_ADDR:-127.0.0.1}"
  master_port="${MASTER_PORT:-29500}"
  local arg key value
  for arg in "$@"; do
    case "$arg" in
      -h|--help) zoo_usage; exit 0 ;;
      --tta|--tensorboard) printf -v "${arg#--}" '%s' 1; continue ;;
      --*=*) key="${arg%%=*}"; key="${key#--}"; key="${key//-/_}"; value="${arg#*=}" ;;
      *) zoo_die "argument '$arg' is not --key=value; see --help" ;;
    esac
    case "$key" in
      data_path|config|batch_size|max_iters|precision_mode|loss_scale|device|device_list|\
      workers|work_dir|checkpoint|pretrained|nnodes|node_rank|master_addr|master_port|\
      eval_mode|slide_crop|slide_stride|show_dir)
        printf -v "$key" '%s' "$value" ;;
      device_id) export ASCEND_DEVICE_ID="$value" ;;
      *) zoo_die "unknown argument --$key; see --help" ;;
    esac
  done
  case "$precision_mode" in
    ""|O0|O1|O2) ;;
    fp32) precision_mode=O0 ;;
    amp) precision_mode=O1 ;;
    *) zoo_die "--precision_mode=$precision_mode is not one of O0, O1, O2, fp32, amp" ;;
  esac
}

# Absolute path of a user path given relative to where the script was started.
zoo_abspath() {
  case "$1" in
    "") printf '' ;;
    /*) printf '%s' "$1" ;;
    *) printf '%s' "$ZOO_START_DIR/$1" ;;
  esac
}

zoo_main() {
  local mode="$1" scale="$2"; shift 2
  ZOO_START_DIR="$PWD"
  zoo_parse "$@"
  ZOO_MODEL_DIR="$(cd "$(dirname "$0")/.." && pwd)"
  cd "$ZOO_MODEL_DIR"
  Network="$(basename "$ZOO_MODEL_DIR")"
  export ASCEND_DEVICE_ID="${ASCEND_DEVICE_ID:-0}"
  local ranks=1
  [ "$scale" = 8p ] && ranks="${RANK_SIZE:-8}"
  export RANK_SIZE="$ranks"
  data_path="$(zoo_abspath "$data_path")"
  config="$(zoo_abspath "$config")"
  checkpoint="$(zoo_abspath "$checkpoint")"
  pretrained="$(zoo_abspath "$pretrained")"
  work_dir="$(zoo_abspath "$work_dir")"
  show_dir="$(zoo_abspath "$show_dir")"
  if [ -n "$data_path" ] && [ ! -d "$data_path" ]; then
    zoo_die "--data_path=$data_path does not exist; pass the dataset root or omit it for synthetic data"
  fi
  if [ -n "$config" ] && [ ! -f "$config" ]; then zoo_die "--config=$config does not exist"; fi
  if [ "$scale" = 8p ] && [ "$node_rank" = 0 ]; then zoo_check_port; fi
  local perf_iters="$ZOO_PERF_ITERS"
  [ -z "$data_path" ] && perf_iters="$ZOO_PERF_ITERS_SYNTHETIC"

  local out="$ZOO_MODEL_DIR/test/output/$ASCEND_DEVICE_ID"
  if [ -d "$out" ]; then rm -rf "$out.prev"; mv "$out" "$out.prev"; fi
  mkdir -p "$out"
  local log="$out/train_${ASCEND_DEVICE_ID}.log"

  local args=(--device="$device")
  [ -n "$data_path" ] && args+=(--data_path="$data_path")
  [ -n "$config" ] && args+=(--config="$config")
  [ -n "$batch_size" ] && args+=(--batch_size="$batch_size")
  [ -n "$precision_mode" ] && args+=(--opt-level="$precision_mode")
  [ -n "$loss_scale" ] && args+=(--loss-scale="$loss_scale")
  [ -n "$device_list" ] && args+=(--device_list="$device_list")
  [ -n "$workers" ] && args+=(--workers="$workers")
  [ -n "$pretrained" ] && args+=(--pretrained="$pretrained")
  [ -n "$eval_mode" ] && args+=(--eval-mode="$eval_mode")
  [ -n "$slide_crop" ] && args+=(--slide-crop="$slide_crop")
  [ -n "$slide_stride" ] && args+=(--slide-stride="$slide_stride")
  [ -n "$show_dir" ] && args+=(--show-dir="$show_dir")
  [ -n "$tta" ] && args+=(--tta)
  [ -n "$tensorboard" ] && args+=(--tensorboard)
  local case
  case "$mode" in
    full)
      case=acc
      [ -n "$max_iters" ] && args+=(--max_iters="$max_iters")
      [ -n "$work_dir" ] && args+=(--work-dir="$work_dir") ;;
    perf)
      case=perf
      if [ -z "$max_iters" ]; then max_iters="$perf_iters"; fi
      args+=(--max_iters="$max_iters" --no-validate --work-dir="${work_dir:-$out/work_dir}") ;;
    eval)
      case=eval
      args+=(--eval-only)
      [ -n "$work_dir" ] && args+=(--work-dir="$work_dir")
      [ -n "$checkpoint" ] && args+=(--checkpoint="$checkpoint") ;;
  esac
  args+=(--log-file="$out/train_${ASCEND_DEVICE_ID}_rank{rank}.log")

  local start end status=0
  start=$(date +%s)
  if [ "$scale" = 8p ]; then
    python3 -m torch.distributed.run --nproc_per_node="$ranks" --nnodes="$nnodes" \
      --node_rank="$node_rank" --master_addr="$master_addr" --master_port="$master_port" \
      train.py "${args[@]}" > "$log" 2>&1 || status=$?
  else
    python3 train.py "${args[@]}" > "$log" 2>&1 || status=$?
  fi
  end=$(date +%s)
  if [ "$status" -ne 0 ]; then
    tail -n 5 "$log" >&2
    zoo_die "$Network $mode run failed (exit $status); full log: $log"
  fi
  [ "$scale" = 8p ] && [ "$node_rank" != 0 ] && { echo "node $node_rank done; node 0 writes the result log"; return 0; }
  if [ "$mode" = full ]; then
    (cd "$ZOO_REPO_DIR" && python3 -m common.plot_log "$log" --out "$out/curves.png" \
      --title "$Network, full run, ${ranks}p") || echo "note: no curves.png for this run" >&2
  fi
  # the result log's three "Final ..." lines stay the script's last output (ModelZoo contract)
  (cd "$ZOO_REPO_DIR" && python3 -m common.result_log --log "$log" --network "$Network" \
    --case "$case" --out-dir "$out" --e2e-seconds "$((end - start))")
}
