# The seeds' "cd <model dir>; source env_npu.sh": the repository's env_npu.sh (Ascend CANN
# environment; changes nothing on a machine without CANN).
source "$(dirname "${BASH_SOURCE[0]}")/../env_npu.sh"
