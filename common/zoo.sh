# Shell helpers for the ModelZoo launch scripts (<model>/test/train_*.sh). A script sets
# Network, batch_size, RANK_SIZE, recipe, smoke_recipe, dataset and synthetic (the generator,
# relative to the repository), sources this file, then calls:
#   zoo_parse "$@"        --key=value arguments -> variables (see zoo_usage), checked
#   zoo_train_args MODE   the train.py arguments of a full | perf | eval run -> train_args
#   zoo_run CMD...        the launch line: output to $log, SIGTERM/SIGINT forwarded
#   zoo_curves, zoo_result_log CASE [ACCURACY_KEY]   the parse that writes the result log
#                         (key 8: mIoU or TrainAccuracy, as the real script of the model)
# The run writes into test/output/<id>.running/; only a run that succeeded replaces
# test/output/<id>/ (the previous one is kept as <id>.prev); a failed run is left in
# test/output/<id>.failed/ and the last good outputs stay untouched.

ZOO_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ZOO_PERF_ITERS=${ZOO_PERF_ITERS:-200}                     # performance run, real data
ZOO_PERF_ITERS_SYNTHETIC=${ZOO_PERF_ITERS_SYNTHETIC:-30}  # performance run, synthetic data

zoo_usage() {
  cat <<USAGE
usage: bash test/$(basename "$0") [--key=value ...]     ($Network, $RANK_SIZE process(es) by default)
  --data_path=DIR        dataset root (default: the seeds' data folder $seed_data when it
                         exists, else the synthetic dataset, generated once)
  --config=FILE          recipe (default: $recipe;
                         without --data_path: $smoke_recipe)
  --batch_size=N         images per device (default $batch_size, or the --config's)
  --max_iters=N          iterations
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
  --sync_bn              SyncBatchNorm across processes (nccl/hccl)
  --dry_run              print the launch line and exit (nothing is run or written)
  --format_only [--split=test]   eval scripts, Cityscapes models: write the benchmark
                         submission (labelIds PNGs) to test/output/<id>/cityscapes_results
  --nnodes=N --node_rank=R --master_addr=HOST --master_port=PORT   (8p scripts, multi-node)
Environment: ASCEND_DEVICE_ID (default 0), RANK_SIZE (processes per node of the 8p scripts);
multi-node: GLOO_SOCKET_IFNAME and HCCL_IF_IP (default: the interface and address of this
node's route to --master_addr); ASCEND_CANN_ROOT (CANN's install root, see env_npu.sh).
Outputs go to test/output/\${ASCEND_DEVICE_ID}/ once the run succeeded (the previous run's folder
is kept as .prev); full runs also leave curves.png there. Dashes and underscores in keys are
interchangeable.
USAGE
}

zoo_die() { echo "error: $*" >&2; exit 2; }

zoo_is_count() { [[ "$1" =~ ^[0-9]+$ ]]; }

# Absolute path of a user path given relative to where the script was started.
zoo_abspath() {
  case "$1" in
    "") printf '' ;;
    /*) printf '%s' "$1" ;;
    *) printf '%s' "$ZOO_START_DIR/$1" ;;
  esac
}

zoo_parse() {
  ZOO_START_DIR="$PWD"
  data_path="" config="" max_iters="" precision_mode="" loss_scale="" user_batch_size=""
  device="auto" device_list="" workers="" work_dir="" checkpoint="" pretrained=""
  eval_mode="" slide_crop="" slide_stride="" show_dir="" tta="" tensorboard="" sync_bn=""
  format_only="" split="" dry_run=""
  nnodes="1" node_rank="0" master_addr="${MASTER_ADDR:-127.0.0.1}"
  master_port="${MASTER_PORT:-29500}"
  local arg key value
  for arg in "$@"; do
    case "$arg" in
      -h|--help) zoo_usage; exit 0 ;;
      --tta|--tensorboard|--sync_bn|--sync-bn|--format_only|--format-only|--dry_run|--dry-run)
        key="${arg#--}"; printf -v "${key//-/_}" '%s' 1; continue ;;
      --*=*) key="${arg%%=*}"; key="${key#--}"; key="${key//-/_}"; value="${arg#*=}" ;;
      *) zoo_die "argument '$arg' is not --key=value; see --help" ;;
    esac
    case "$key" in
      data_path|config|max_iters|precision_mode|loss_scale|device|device_list|\
      workers|work_dir|checkpoint|pretrained|nnodes|node_rank|master_addr|master_port|\
      eval_mode|slide_crop|slide_stride|show_dir|split)
        printf -v "$key" '%s' "$value" ;;
      batch_size) user_batch_size="$value" ;;
      device_id) export ASCEND_DEVICE_ID="$value" ;;
      *) zoo_die "unknown argument --$key; see --help" ;;
    esac
  done
  export ASCEND_DEVICE_ID="${ASCEND_DEVICE_ID:-0}"
  zoo_is_count "$ASCEND_DEVICE_ID" ||
    zoo_die "device id '$ASCEND_DEVICE_ID' (--device_id / ASCEND_DEVICE_ID) is not a number"
  zoo_is_count "$RANK_SIZE" && [ "$RANK_SIZE" -ge 1 ] ||
    zoo_die "RANK_SIZE='$RANK_SIZE' is not a positive number of processes"
  export RANK_SIZE
  case "$precision_mode" in
    ""|O0|O1|O2) ;;
    fp32) precision_mode=O0 ;;
    amp) precision_mode=O1 ;;
    *) zoo_die "--precision_mode=$precision_mode is not one of O0, O1, O2, fp32, amp" ;;
  esac
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
  ZOO_MODEL_DIR="$(cd "$(dirname "$0")/.." && pwd)"
  cd "$ZOO_MODEL_DIR" || zoo_die "cannot enter $ZOO_MODEL_DIR"
  if [ -z "$data_path" ] && [ -n "${seed_data:-}" ] && [ -d "$seed_data" ]; then
    data_path="$ZOO_MODEL_DIR/$seed_data"
    echo "Using $seed_data, the seeds' data folder (--data_path overrides it)"
  fi
  out="$ZOO_MODEL_DIR/test/output/$ASCEND_DEVICE_ID"
  run_dir="$out.running"
  log="$run_dir/train_${ASCEND_DEVICE_ID}.log"
  zoo_network
}

# Multi-node: the host-side gloo control group (common/distributed.py) and HCCL must use the
# interface that reaches node 0. Left alone, gloo binds to the address the hostname resolves
# to (127.0.1.1 on many distributions: new_group fails, or waits out its 30-minute timeout)
# and HCCL may take a docker bridge. The kernel's route to master_addr names both: its source
# address (HCCL_IF_IP) and the interface holding that address (GLOO_SOCKET_IFNAME); values
# the user set are kept. Python rather than `ip route get`: iproute2 may be missing, and on
# node 0 that route is `local ... dev lo`. Single node: left to gloo and HCCL.
zoo_network() {
  [ "$nnodes" != 1 ] || return 0
  if [ -n "${GLOO_SOCKET_IFNAME:-}" ] && [ -n "${HCCL_IF_IP:-}" ]; then return 0; fi
  local route src dev
  if ! route="$(python3 - "$master_addr" <<'PY'
import fcntl, ipaddress, socket, struct, sys

host = sys.argv[1]
try:
    family, _, _, _, addr = socket.getaddrinfo(host, 9, type=socket.SOCK_DGRAM)[0]
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.connect(addr)  # a UDP connect only looks the route up; nothing is sent
        src = s.getsockname()[0].split("%")[0]
except OSError as exc:
    print(f"no route from this node to --master_addr={host} ({exc.strerror or exc}); pass "
          "node 0's address")
    sys.exit(1)
try:
    literal_loopback = ipaddress.ip_address(host).is_loopback  # one-host test: 127.0.0.1
except ValueError:
    literal_loopback = False
if ipaddress.ip_address(src).is_loopback and not literal_loopback:
    print(f"--master_addr={host} resolves to {addr[0]}, a loopback address the other nodes "
          "cannot reach (/etc/hosts maps many hostnames to 127.0.1.1); pass node 0's address "
          "on the network the nodes share")
    sys.exit(1)
dev = "-"  # the interface holding src: IPv6 from /proc, IPv4 by SIOCGIFADDR
try:
    if family == socket.AF_INET6:
        want = ipaddress.ip_address(src).exploded.replace(":", "")
        with open("/proc/net/if_inet6") as f:
            dev = next((l.split()[5] for l in f if l.split()[0] == want), "-")
    else:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for _, name in socket.if_nameindex():
                try:
                    ifreq = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", name.encode()))
                except OSError:  # no IPv4 address
                    continue
                if socket.inet_ntoa(ifreq[20:24]) == src:
                    dev = name
                    break
except OSError:
    pass
print(src, dev)
PY
)"; then
    if [ -n "${GLOO_SOCKET_IFNAME:-}" ]; then return 0; fi  # the user's interface; HCCL picks
    zoo_die "$route; or set GLOO_SOCKET_IFNAME=<this node's interface to node 0> and" \
            "HCCL_IF_IP=<its address> on every node"
  fi
  read -r src dev <<< "$route"
  export HCCL_IF_IP="${HCCL_IF_IP:-$src}"
  if [ -z "${GLOO_SOCKET_IFNAME:-}" ]; then
    if [ "$dev" = "-" ]; then
      zoo_die "no interface found holding $src, this node's address on the route to" \
              "--master_addr=$master_addr; set GLOO_SOCKET_IFNAME=<the interface with that" \
              "address> on every node"
    fi
    export GLOO_SOCKET_IFNAME="$dev"
  fi
}

# Node 0 hosts the rendezvous on master_port. Busy: a single-node run takes a free port and
# says so; a multi-node run stops (the other nodes were told this port).
zoo_check_port() {
  [ "$node_rank" = 0 ] || return 0
  if python3 - "$master_port" <<'PY'
import socket, sys
with socket.socket() as s:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("", int(sys.argv[1])))
    except (OSError, ValueError, OverflowError):
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

# Without --data_path: make sure the synthetic dataset exists (generated once by the script
# named in $synthetic) and say so first, with where it is and how to use real data.
zoo_synthetic_notice() {
  [ -z "$data_path" ] || return 0
  local root
  root="$(python3 "$ZOO_REPO/$synthetic")" || zoo_die "could not generate the synthetic $dataset dataset"
  echo "No --data_path: this run uses the synthetic $dataset dataset at $root (generated once);" \
       "pass --data_path=/path/to/$(echo "$dataset" | tr 'A-Z' 'a-z') to use real data"
}

# train.py's arguments for a full (train + evaluate), perf (train only, short) or eval run.
zoo_train_args() {
  local mode="$1"
  zoo_synthetic_notice
  train_args=(--device="$device")
  if [ -n "$config" ]; then
    train_args+=(--config="$config")
  elif [ -n "$data_path" ]; then
    train_args+=(--config="$recipe")
  else
    train_args+=(--config="$smoke_recipe")
  fi
  if [ -n "$user_batch_size" ]; then
    train_args+=(--batch_size="$user_batch_size")
  elif [ -z "$config" ]; then
    train_args+=(--batch_size="$batch_size")
  fi
  [ -n "$data_path" ] && train_args+=(--data_path="$data_path")
  [ -n "$precision_mode" ] && train_args+=(--opt-level="$precision_mode")
  [ -n "$loss_scale" ] && train_args+=(--loss-scale="$loss_scale")
  [ -n "$device_list" ] && train_args+=(--device_list="$device_list")
  [ -n "$workers" ] && train_args+=(--workers="$workers")
  [ -n "$pretrained" ] && train_args+=(--pretrained="$pretrained")
  [ -n "$eval_mode" ] && train_args+=(--eval-mode="$eval_mode")
  [ -n "$slide_crop" ] && train_args+=(--slide-crop="$slide_crop")
  [ -n "$slide_stride" ] && train_args+=(--slide-stride="$slide_stride")
  [ -n "$show_dir" ] && train_args+=(--show-dir="$show_dir")
  [ -n "$tta" ] && train_args+=(--tta)
  [ -n "$tensorboard" ] && train_args+=(--tensorboard)
  [ -n "$sync_bn" ] && train_args+=(--sync_bn)
  case "$mode" in
    full)
      [ -n "$max_iters" ] && train_args+=(--max_iters="$max_iters")
      [ -n "$work_dir" ] && train_args+=(--work-dir="$work_dir") ;;
    perf)
      local iters="$ZOO_PERF_ITERS"
      [ -z "$data_path" ] && iters="$ZOO_PERF_ITERS_SYNTHETIC"
      train_args+=(--max_iters="${max_iters:-$iters}" --no-validate
                   --work-dir="${work_dir:-$run_dir/work_dir}") ;;
    eval)
      train_args+=(--eval-only)
      [ -n "$format_only" ] && train_args+=(--format-only --format-dir="$run_dir/cityscapes_results")
      [ -n "$split" ] && train_args+=(--split="$split")
      [ -n "$work_dir" ] && train_args+=(--work-dir="$work_dir")
      [ -n "$checkpoint" ] && train_args+=(--checkpoint="$checkpoint") ;;
  esac
  train_args+=(--log-file="$run_dir/train_${ASCEND_DEVICE_ID}_rank{rank}.log")
  [ "$RANK_SIZE" -gt 1 ] || [ "$nnodes" != 1 ] && zoo_check_port
  return 0
}

# Run the launch line with its output in $log; SIGTERM/SIGINT to this script reach the
# trainer (its graceful stop saves a checkpoint). On success the run's folder becomes
# test/output/<id>/; on failure it is kept as <id>.failed/ and the script exits non-zero.
zoo_run() {
  if [ -n "$dry_run" ]; then  # --dry_run: show what would run, touch nothing
    # with the network interfaces it would get (zoo_network), as a line a shell can run
    local name
    for name in GLOO_SOCKET_IFNAME HCCL_IF_IP; do
      if [ -n "${!name:-}" ]; then printf '%q ' "$name=${!name}"; fi
    done
    printf '%q ' "$@"; echo; exit 0
  fi
  rm -rf "$run_dir"
  mkdir -p "$run_dir" || zoo_die "cannot create $run_dir"
  zoo_start=$(date +%s)
  "$@" > "$log" 2>&1 &
  local pid=$! status=0 follower=""
  trap 'kill -TERM "$pid" 2>/dev/null' TERM
  trap 'kill -INT "$pid" 2>/dev/null' INT
  if [ -t 1 ]; then  # a terminal: show progress from the log (CI and pipes stay quiet)
    echo "[$Network] running; full log: $log"
    python3 "$ZOO_REPO/common/tools/progress.py" "$log" --pid "$pid" --label "$Network" &
    follower=$!
  fi
  while :; do
    wait "$pid" && status=0 || status=$?
    kill -0 "$pid" 2>/dev/null || break   # wait was interrupted by a trapped signal
  done
  if [ -n "$follower" ]; then wait "$follower" || true; fi
  trap - TERM INT
  zoo_end=$(date +%s)
  if [ "$status" -ne 0 ]; then
    rm -rf "$out.failed"
    mv "$run_dir" "$out.failed"
    log="$out.failed/$(basename "$log")"
    # the trainer's own one-line error, when it gave one, leads this script's error line
    local reason
    reason="$(grep '^error: ' "$log" | tail -n 1)" || true
    if [ -z "$reason" ]; then tail -n 5 "$log" >&2; fi
    echo "error: ${reason:+${reason#error: }; }$Network run failed (exit $status); log: $log;" \
         "the previous outputs in $out are untouched" >&2
    exit "$status"
  fi
  if [ -d "$out" ]; then rm -rf "$out.prev"; mv "$out" "$out.prev"; fi
  mv "$run_dir" "$out"
  log="$out/$(basename "$log")"
  [ "$nnodes" != 1 ] && [ "$node_rank" != 0 ] && {
    echo "node $node_rank done; node 0 writes the result log"; exit 0; }
  return 0
}

# curves.png (loss terms, lr, images/s, mIoU) of a full run's log.
zoo_curves() {
  python3 "$ZOO_REPO/common/tools/plot_log.py" "$log" --out "$out/curves.png" \
    --title "$Network, full run, ${RANK_SIZE}p" || echo "note: no curves.png for this run" >&2
}

# ${CaseName}.log, the loss curve and the three "Final ..." lines (the script's last output);
# for --format_only, where the submission is.
zoo_result_log() {
  if [ -n "$format_only" ]; then
    echo "Cityscapes submission (labelIds PNGs): $out/cityscapes_results; zip it and upload it"
    return 0
  fi
  python3 "$ZOO_REPO/common/result_log.py" --log "$log" --network "$Network" --case "$1" \
    --accuracy-key "${2:-TrainAccuracy}" --out-dir "$out" --e2e-seconds "$((zoo_end - zoo_start))"
}
