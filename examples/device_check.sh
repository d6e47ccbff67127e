#!/bin/bash
# The CUDA checks of one GPU session, as one short script (issue 11: "record one Cora fit's time on CUDA";
# issue 29: the scale benchmark on the GPU, the on-device generator against the CPU one, the largest N).
#
# Run it through the device tool from the repository root. ../shared does not travel, so first copy the
# Cora files into an ignored folder and carry it:
#     mkdir -p data/planetoid && cp ../shared/data/planetoid/ind.cora.* data/planetoid/   # /data/ is ignored
#     run(command="bash examples/device_check.sh", carry=["data"], timeout_s=600)   # caps sum to 600 s
# The machine's python3 already holds torch, torch-geometric, scikit-learn and pytest. Records go to
# $OUT (they come back) and, on a dry run without $OUT, to /tmp/device_check. Dry run on a CPU machine:
#     DEVICE=cpu MAX_OUTER=2 SCALE_N=20000 SCALE_OUTER=1 bash examples/device_check.sh
set -u -o pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/device_check}
DEVICE=${DEVICE:-cuda}
MAX_OUTER=${MAX_OUTER:-200}
SCALE_N=${SCALE_N:-1000000}      # the largest planted partition tried (issue 29 aims at 1M nodes on ~139 GB)
SCALE_OUTER=${SCALE_OUTER:-15}   # outer iterations per scale fit: per-step time, memory and accuracy within budget
mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 LDS_DATA_DIR=${LDS_DATA_DIR:-$PWD/data}  # layout data/planetoid/ind.cora.*
PY=${PYTHON:-python3}
{
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
  # the CPU/CUDA parity test and the rest of the LDS tests, on this machine
  timeout 90 $PY -m pytest -q -x tests/lds -p no:cacheprovider
  # one whole Cora fit per candidate set (all pairs, then given ∪ kNN-20), timed by time_lds.py
  for cand in all sparse; do
    timeout 90 $PY examples/time_lds.py --dataset cora --candidates "$cand" --device "$DEVICE" \
      --max-outer-iters "$MAX_OUTER" --out "$OUT/lds_timing.jsonl" --note "examples/device_check.sh"
  done
  # issue 29: the scale benchmark on the device. Per-step time with the CPU generator (host draw + copy per
  # step) against the on-device generator, at 100k nodes; then the largest N with the on-device generator.
  # Records (one JSON line per run, with the GPU name and its peak memory) go to $OUT/scale/runs.jsonl.
  THREADS=$(nproc)
  for rng in cpu device; do
    timeout 90 $PY examples/scale.py --sizes 100000 --seeds 0 --threads "$THREADS" --device "$DEVICE" \
      --lds "{\"rng_device\": \"$rng\", \"max_outer_iters\": $SCALE_OUTER}" --out "$OUT/scale"
  done
  timeout 150 $PY examples/scale.py --sizes "$SCALE_N" --seeds 0 --threads "$THREADS" --device "$DEVICE" \
    --lds "{\"rng_device\": \"device\", \"max_outer_iters\": $SCALE_OUTER}" --out "$OUT/scale"
} 2>&1 | tee "$OUT/device_check.log"
