#!/usr/bin/env bash
# The GPU model call (bench/gpu_model.py says what it runs). On the GPU machine, which has no package
# access, after bench/gpu_prepare.sh filled .whl/ and .gl/ on a machine that has:
#
#   bash bench/gpu_model.sh --out DIR            # steps stop starting after 340 s (--budget-s); DIR/model.tar at the end
#   bash bench/gpu_model.sh --out DIR --smoke    # the same chain at tiny size on the CPU (no installs), ~30 s
#   bash bench/gpu_model.sh --out DIR --smoke --carried SITE   # the rehearsal (bench/RESULTS.md, "GPU suite"):
#                                                # the carried wheels installed into SITE as the GPU call does
#
# Without --smoke it prepares the machine as bench/gpu_suite.sh does (bench/gpu_env.sh). Everything else
# is passed to bench/gpu_model.py (e.g. --workers N, --budget-s S, section.key=value overrides).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

# shellcheck source=bench/gpu_env.sh
. "$root/bench/gpu_env.sh"
gpu_call_args "bash bench/gpu_model.sh --out DIR [--smoke [--carried SITE]] [gpu_model.py options]" "$@"
cd "$root"

gpu_call_setup "model call"
exec "$PY" bench/gpu_model.py "${call_args[@]}" ${rest[@]+"${rest[@]}"}
