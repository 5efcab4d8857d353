#!/usr/bin/env bash
# Ascend CANN environment for the NPU runs: source env_npu.sh
# Safe to source on a machine without CANN: it then changes nothing (and says so on stderr
# when $cann_root exists without a set_env.sh). Safe under the caller's set -e / set -u, which
# every launch script runs with.
#
#   ASCEND_CANN_ROOT   the CANN install root, the folder holding ascend-toolkit/set_env.sh (or
#                      cann/set_env.sh, or set_env.sh); default: Install_Path in
#                      /etc/Ascend/ascend_cann_install.info, else /usr/local/Ascend
#   HCCL_IF_IP         kept when set. Multi-node launch scripts set it (common/zoo.sh) to this
#                      node's address on the route to the master node; otherwise HCCL picks
#                      its host NIC itself, skipping docker and loopback NICs (this file used to
#                      take the first `hostname -I` address, which can be docker0). By hand,
#                      multi-node: export HCCL_IF_IP=<this node's address towards node 0>.
install_info=/etc/Ascend/ascend_cann_install.info
if [ -n "${ASCEND_CANN_ROOT:-}" ]; then
  cann_root=$ASCEND_CANN_ROOT
elif [ -f "$install_info" ]; then
  cann_root=$(grep -E '^Install_Path=' "$install_info" | cut -d= -f2)
else
  cann_root=/usr/local/Ascend
fi
set_env=""
for candidate in "$cann_root/ascend-toolkit/set_env.sh" "$cann_root/cann/set_env.sh" \
                 "$cann_root/set_env.sh"; do
  if [ -f "$candidate" ]; then set_env=$candidate; break; fi
done
if [ -z "$set_env" ]; then
  # CANN was expected there: say why the NPU environment is not set
  if [ -d "$cann_root" ] || [ -n "${ASCEND_CANN_ROOT:-}" ]; then
    echo "env_npu.sh: no CANN set_env.sh under $cann_root; NPU environment not set" >&2
  fi
else
  # CANN's set_env.sh appends to variables without a default ("PYTHONPATH=...:$PYTHONPATH"),
  # which stops a set -u caller with "unbound variable" when PYTHONPATH or LD_LIBRARY_PATH is
  # unset, and it is not written for set -e. Source it with both off, then restore the
  # caller's (from $-: a $(set +o) subshell would not show -e).
  env_npu_flags=$-
  set +eu
  # shellcheck disable=SC1090
  source "$set_env"
  set +eu  # whatever set_env.sh left on
  # appending to an unset variable leaves a trailing ':', an empty entry that python and the
  # dynamic loader read as the current directory
  [ -n "$PYTHONPATH" ] && export PYTHONPATH="${PYTHONPATH%:}"
  [ -n "$LD_LIBRARY_PATH" ] && export LD_LIBRARY_PATH="${LD_LIBRARY_PATH%:}"
  case $env_npu_flags in *e*) set -e ;; esac
  case $env_npu_flags in *u*) set -u ;; esac
  unset env_npu_flags
  export TASK_QUEUE_ENABLE=1            # asynchronous operator dispatch
  export HCCL_WHITELIST_DISABLE=1
  export HCCL_CONNECT_TIMEOUT="${HCCL_CONNECT_TIMEOUT:-1200}"
  export ASCEND_GLOBAL_LOG_LEVEL=3       # errors only
  export ASCEND_SLOG_PRINT_TO_STDOUT=0
  export ASCEND_GLOBAL_EVENT_ENABLE=0
fi
