#!/usr/bin/env bash
# GPU checks (issue 5): the paper's search step (stem 48, 1 x 4 x 128^3, float16 autocast as
# nnU-Net trains) in the three sampling modes, with and without per-cell checkpointing, the
# same step before the first and the second round of memory work (.bench_baseline and
# .bench_prev = nnunet_scnas of commits 34ea4b7 and dffe279, made by
#   git archive COMMIT nnunet_scnas | tar -x -C FOLDER), a retrain step at stem 68,
# and the shape-only memory estimate beside the measurements. Needs torch only (no nnunetv2).
# About 7 minutes on an H200; run through the device tool with carry [".bench_baseline", ".bench_prev"].
set -u
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
"$PY" -c "import torch; print('torch', torch.__version__)" | tee -a "$OUT/gpu.txt"
B="$PY bench/search_step.py --device cuda --amp --reps 2"
$B --sizes 128 --stems 48 --modes two_op one_op --checkpoint-cells | tee "$OUT/paper_ckpt.txt"
$B --sizes 96 128 --stems 48 | tee "$OUT/modes.txt"
for base in .bench_baseline .bench_prev; do
  [ -d $base/nnunet_scnas ] && $B --sizes 128 --stems 48 --modes two_op all --code $base | tee "$OUT/baseline$base.txt"
done
$B --sizes 128 --stems 68 --batch 2 --genotype docs/example_genotype.json | tee "$OUT/retrain.txt"
"$PY" - <<'PY' | tee "$OUT/estimate.txt"
from nnunet_scnas.tools.memory import estimate_training_memory
from nnunet_scnas.search_model import SearchNetwork
net = SearchNetwork(4, 4, 48)
for ckpt in (False, True):
    print(f"estimate search stem 48, 1x4x128^3, checkpoint_cells={ckpt}: "
          f"{estimate_training_memory(net, (1, 4, 128, 128, 128), checkpoint_cells=ckpt):.1f} GB")
PY
