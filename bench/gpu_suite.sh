#!/usr/bin/env bash
# The prepared GPU suite (bench/gpu_suite.py says what it measures). On the GPU machine, which has no
# package access, after bench/gpu_prepare.sh filled .whl/ and .gl/ on a machine that has:
#
#   bash bench/gpu_suite.sh --out DIR            # about 4 minutes on an H200; results land in DIR as they exist
#   bash bench/gpu_suite.sh --out DIR --smoke    # the same Python entry points at tiny size on the CPU (no installs)
#   bash bench/gpu_suite.sh --out DIR --smoke --carried SITE   # the rehearsal (bench/RESULTS.md, "GPU suite"):
#                                                # the carried wheels installed into SITE as the GPU call does
#
# Without --smoke it first (bench/gpu_env.sh) unpacks the carried GL loader .debs into / (root: the lent machine runs
# commands as root) and the carried wheels into /tmp/site, puts imageio-ffmpeg's static ffmpeg on the
# PATH when there is no ffmpeg, and points EGL at the NVIDIA vendor file when the system has none.
# Everything else is passed to bench/gpu_suite.py.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

# shellcheck source=bench/gpu_env.sh
. "$root/bench/gpu_env.sh"
gpu_call_args "bash bench/gpu_suite.sh --out DIR [--smoke] [gpu_suite.py options]" "$@"
cd "$root"

gpu_call_setup "suite"
exec "$PY" bench/gpu_suite.py "${call_args[@]}" ${rest[@]+"${rest[@]}"}
