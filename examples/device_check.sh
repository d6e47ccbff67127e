#!/bin/bash
# The CUDA checks of one GPU session, as one short script (issue 11: "record one Cora fit's time on CUDA").
#
# Run it through the device tool from the repository root. ../shared does not travel, so first copy the
# Cora files into an ignored folder and carry it:
#     mkdir -p data/planetoid && cp ../shared/data/planetoid/ind.cora.* data/planetoid/   # /data/ is ignored
#     run(command="bash examples/device_check.sh", carry=["data"], timeout_s=540)
# The machine's python3 already holds torch, torch-geometric, scikit-learn and pytest. Records go to
# $OUT (they come back) and, on a dry run without $OUT, to /tmp/device_check. Dry run on a CPU machine:
#     DEVICE=cpu MAX_OUTER=2 bash examples/device_check.sh
set -u -o pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/device_check}
DEVICE=${DEVICE:-cuda}
MAX_OUTER=${MAX_OUTER:-200}
mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 LDS_DATA_DIR=${LDS_DATA_DIR:-$PWD/data}  # layout data/planetoid/ind.cora.*
PY=${PYTHON:-python3}
{
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
  # the CPU/CUDA parity test and the rest of the LDS tests, on this machine
  timeout 240 $PY -m pytest -q -x tests/lds -p no:cacheprovider
  # one whole Cora fit per candidate set (all pairs, then given ∪ kNN-20), timed by time_lds.py
  for cand in all sparse; do
    timeout 300 $PY examples/time_lds.py --dataset cora --candidates "$cand" --device "$DEVICE" \
      --max-outer-iters "$MAX_OUTER" --out "$OUT/lds_timing.jsonl" --note "examples/device_check.sh"
  done
} 2>&1 | tee "$OUT/device_check.log"
