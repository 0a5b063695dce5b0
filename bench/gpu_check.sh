#!/usr/bin/env bash
# GPU checks, run through the device tool (one H200, ~15 device-minutes a session).
#
#   bash bench/gpu_check.sh            # issue 13: training step, SCNAS vs stock nnU-Net (~6 min)
#   bash bench/gpu_check.sh levers     # issue 13: GPU kernels and levers (bench/gpu_levers.py, ~1.5 min)
#   bash bench/gpu_check.sh memory     # issue 5: search-step memory (~7 min; see docs/BENCHMARKS.md)
#
# The device image has torch but not nnU-Net; carry nnunetv2 and dynamic-network-architectures
# as Python 3.12 wheels in .whl (see /work/.library/device/README.md), then:
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
#   PYTHONPATH=/tmp/site:$PWD OUT=$OUT bash bench/gpu_check.sh
set -u
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
"$PY" -c "import torch; print('torch', torch.__version__)" | tee -a "$OUT/gpu.txt"

if [ "${1:-train_step}" = train_step ]; then
  # the paper's retrain (stem 68, batch 2, 4 x 128^3 as BraTS, float16 autocast) against nnU-Net's
  # 3d_fullres for that patch (32-320 features, 6 stages): every genotype, both memory layouts ...
  T="$PY bench/train_step.py --device cuda --amp --patch 128,128,128 --channels 4 --classes 4 --stems 68 --stock-base 32"
  timeout 180 $T --genotypes example all_conv all_sep_dil pooling_heavy random1 --channels-last --reps 5 \
    2>&1 | tee "$OUT/train_step_layouts.txt"
  # ... and compiled, as nnU-Net trains on a GPU (both trainers compile by default there)
  timeout 240 $T --genotypes example --compile --reps 5 2>&1 | tee "$OUT/train_step_compiled.txt"
  exit 0
fi
if [ "$1" = levers ]; then
  timeout 240 "$PY" bench/gpu_levers.py 2>&1 | tee "$OUT/gpu_levers.txt"
  exit 0
fi

B="$PY bench/search_step.py --device cuda --amp --reps 2"
$B --sizes 128 --stems 48 --modes two_op one_op --checkpoint-cells | tee "$OUT/paper_ckpt.txt"
$B --sizes 96 128 --stems 48 | tee "$OUT/modes.txt"
$B --sizes 128 --stems 68 --batch 2 --genotype docs/example_genotype.json | tee "$OUT/retrain.txt"
"$PY" - <<'PY' | tee "$OUT/estimate.txt"
from nnunet_scnas.tools.memory import estimate_training_memory
from nnunet_scnas.search_model import SearchNetwork
net = SearchNetwork(4, 4, 48)
for ckpt in (False, True):
    print(f"estimate search stem 48, 1x4x128^3, checkpoint_cells={ckpt}: "
          f"{estimate_training_memory(net, (1, 4, 128, 128, 128), checkpoint_cells=ckpt):.1f} GB")
PY
