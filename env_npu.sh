#!/usr/bin/env bash
# Ascend CANN environment for the NPU runs: source env_npu.sh
# Safe to source on a machine without CANN: it then changes nothing (and says so on stderr
# when $cann_root exists without a set_env.sh).
install_info=/etc/Ascend/ascend_cann_install.info
if [ -f "$install_info" ]; then
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
  if [ -d "$cann_root" ]; then  # CANN was expected here: say why the NPU environment is not set
    echo "env_npu.sh: no CANN set_env.sh under $cann_root; NPU environment not set" >&2
  fi
else
  # shellcheck disable=SC1090
  source "$set_env"
  export TASK_QUEUE_ENABLE=1            # asynchronous operator dispatch
  export HCCL_WHITELIST_DISABLE=1
  export HCCL_IF_IP="${HCCL_IF_IP:-$(hostname -I 2>/dev/null | awk '{print $1}')}"
  export HCCL_CONNECT_TIMEOUT="${HCCL_CONNECT_TIMEOUT:-1200}"
  export ASCEND_GLOBAL_LOG_LEVEL=3       # errors only
  export ASCEND_SLOG_PRINT_TO_STDOUT=0
  export ASCEND_GLOBAL_EVENT_ENABLE=0
fi
