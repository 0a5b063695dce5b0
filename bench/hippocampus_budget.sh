#!/usr/bin/env bash
# SCNAS against stock nnU-Net on real data at one budget (docs/BENCHMARKS.md, section 3).
#
# Hippocampus (../shared/data/Dataset004_Hippocampus, MSD Task04): the first NTRAIN (default 100)
# cases become Dataset604_HippoBudget; the last 40 are held back (never planned, trained or validated on)
# and predicted at the end. Fold 0 of nnU-Net's 5-fold split. Both methods get the same
# training iterations (retrain = stock), batch 2, and networks of matched FLOPs (stock nnU-Net's
# features_per_stage are scaled until its FLOPs at its patch match the retrained SCNAS network's).
# The search's own iterations are reported separately. Controls: each network also trained with
# the other's optimiser (SCNAS: Adam; nnU-Net: SGD + poly), and on the CPU stock nnU-Net with
# 5x the iterations (about the SCNAS retrain's wall time there). Also the demo's genotype (found
# on the synthetic BraTS-like data) retrained here (transfer), if DEMO_GENOTYPE points to it.
# Finished trainings and predictions are kept: rerunning continues where it stopped.
#
#   bash bench/hippocampus_budget.sh                 # CPU: ~60 min on 2 cores (160 iterations each)
#   SCALE=GPU bash bench/hippocampus_budget.sh       # GPU: stem 68 / 32 base features, 25k iterations
#   DEMO_GENOTYPE=scnas_demo/nnUNet_results/.../genotype.json bash bench/hippocampus_budget.sh
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/_hippocampus.sh"  # REPO SHARED NTRAIN PY BIN, the data checked; step run prepare_hippocampus
WORK=${WORK:-$PWD/hippocampus_budget}
SCALE=${SCALE:-CPU}
DEVICE=${DEVICE:-$([ "$SCALE" = GPU ] && echo cuda || echo cpu)}
export nnUNet_raw=$WORK/nnUNet_raw nnUNet_preprocessed=$WORK/nnUNet_preprocessed nnUNet_results=$WORK/nnUNet_results
export nnUNet_extTrainer=$HERE/budget_trainers${nnUNet_extTrainer:+:$nnUNet_extTrainer}
# one augmentation worker: on 2 cores more workers only fight the training's threads
export nnUNet_n_proc_DA=${nnUNet_n_proc_DA:-1} nnUNet_def_n_proc=${nnUNet_def_n_proc:-2} PYTHONUNBUFFERED=1
D=604; NAME=Dataset604_HippoBudget; RAW=$nnUNet_raw/$NAME
prepare_hippocampus
# batch 2 for both (nnU-Net plans batch 9 here: too slow on a CPU, and the budget must match)
"$PY" - "$nnUNet_preprocessed/$NAME" <<'PY'
import json, sys
folder = sys.argv[1]
p = json.load(open(f"{folder}/nnUNetPlansSCNAS.json"))
p["plans_name"] = "nnUNetPlansSCNASBudget"
p["configurations"]["3d_fullres"]["batch_size"] = 2
json.dump(p, open(f"{folder}/nnUNetPlansSCNASBudget.json", "w"), indent=1)
PY
# train NAME TRAINER PLANS [VAR=VALUE ...]: fold 0, skipped if that training finished before
train() {
  local name=$1 tr=$2 pl=$3; shift 3
  local out=$nnUNet_results/$NAME/${tr}__${pl}__3d_fullres/fold_0
  if [ -f "$out/validation/summary.json" ] || [ -f "$out/genotype.json" -a -f "$out/alpha_history.json" ]; then
    step "$name: finished before ($out)"; return
  fi
  run "$name" env "$@" "$BIN/nnUNetv2_train" $D 3d_fullres 0 --c -device "$DEVICE" -tr "$tr" -p "$pl"
}
train search nnUNetTrainerSCNASSearch_budget$SCALE nnUNetPlansSCNASBudget
train retrain nnUNetTrainerSCNASRetrain_budget$SCALE nnUNetPlansSCNASBudget
GENOTYPE=$nnUNet_results/$NAME/nnUNetTrainerSCNASSearch_budget${SCALE}__nnUNetPlansSCNASBudget__3d_fullres/fold_0/genotype.json
step "matching stock nnU-Net's width to the retrained network's FLOPs"
"$PY" - "$nnUNet_preprocessed/$NAME" "$GENOTYPE" "$SCALE" <<'PY' | tee "$WORK/logs/match.txt"
import copy, json, sys
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
from nnunet_scnas import Genotype, SCNASNetwork, count_flops
from nnunet_scnas.recipe import RETRAIN
folder, genotype, scale = sys.argv[1:]
stem = RETRAIN.stem_channels if scale == "GPU" else 12
scnas = json.load(open(f"{folder}/nnUNetPlansSCNASBudget.json"))["configurations"]["3d_fullres"]
target = count_flops(SCNASNetwork(1, 3, Genotype.load(genotype), stem, deep_supervision=False), [1, 1, *scnas["patch_size"]])
plans = json.load(open(f"{folder}/nnUNetPlans.json"))
cfg = plans["configurations"]["3d_fullres"]
arch = cfg["architecture"]
def flops(base):
    kw = copy.deepcopy(arch["arch_kwargs"]); cap = kw["features_per_stage"][-1]
    kw["features_per_stage"] = [min(base * 2 ** i, cap) for i in range(len(kw["features_per_stage"]))]
    net = get_network_from_plans(arch["network_class_name"], kw, arch["_kw_requires_import"], 1, 3, allow_init=False, deep_supervision=False)
    return count_flops(net, [1, 1, *cfg["patch_size"]]), kw
best = min(range(2, 33), key=lambda b: abs(flops(b)[0] - target))
f, kw = flops(best)
print(f"SCNAS stem {stem}: {target / 1e9:.2f} GFLOPs per patch {scnas['patch_size']}; stock base {best}: {f / 1e9:.2f} GFLOPs per patch {cfg['patch_size']}")
cfg["architecture"]["arch_kwargs"] = kw
cfg["batch_size"] = 2
plans["plans_name"] = "nnUNetPlansBudget"
json.dump(plans, open(f"{folder}/nnUNetPlansBudget.json", "w"), indent=1)
PY
train stock nnUNetTrainer_budget$SCALE nnUNetPlansBudget
# controls that separate architecture from recipe: each network with the other's optimiser
train stock_adam nnUNetTrainer_budget${SCALE}Adam nnUNetPlansBudget
train retrain_sgd nnUNetTrainerSCNASRetrain_budget${SCALE}nnUNetRecipe nnUNetPlansSCNASBudget
PAIRS="nnUNetTrainer_budget$SCALE:nnUNetPlansBudget nnUNetTrainer_budget${SCALE}Adam:nnUNetPlansBudget"
PAIRS="$PAIRS nnUNetTrainerSCNASRetrain_budget$SCALE:nnUNetPlansSCNASBudget nnUNetTrainerSCNASRetrain_budget${SCALE}nnUNetRecipe:nnUNetPlansSCNASBudget"
if [ "$SCALE" = CPU ]; then  # stock nnU-Net at about the SCNAS retrain's wall time on 2 cores
  train stock_long nnUNetTrainer_budgetCPULong nnUNetPlansBudget
  PAIRS="$PAIRS nnUNetTrainer_budgetCPULong:nnUNetPlansBudget"
fi
if [ -n "${DEMO_GENOTYPE:-}" ]; then
  train transfer nnUNetTrainerSCNASRetrain_budget${SCALE}Transfer nnUNetPlansSCNASBudget SCNAS_GENOTYPE="$DEMO_GENOTYPE"
  PAIRS="$PAIRS nnUNetTrainerSCNASRetrain_budget${SCALE}Transfer:nnUNetPlansSCNASBudget"
fi
for pair in $PAIRS; do
  tr=${pair%%:*}; pl=${pair##*:}; out=$WORK/held_back/pred_$tr
  [ -f "$out/summary.json" ] && continue
  t0=$SECONDS
  run "predict_$tr" "$BIN/nnUNetv2_predict" -i "$WORK/held_back/images" -o "$out" -d $D -c 3d_fullres -f 0 -tr "$tr" -p "$pl" -device "$DEVICE" -npp 1 -nps 1 --disable_progress_bar
  echo "$((SECONDS - t0))" > "$out/predict_seconds.txt"
  run "evaluate_$tr" "$BIN/nnUNetv2_evaluate_folder" "$WORK/held_back/labels" "$out" -djfile "$out/dataset.json" -pfile "$out/plans.json" -np 1
done
TR_ARGS=(); for pair in $PAIRS; do TR_ARGS+=(-tr "$pair"); done
run compare "$BIN/nnunet_scnas" compare -d $D -c 3d_fullres -f 0 "${TR_ARGS[@]}" -o "$WORK/report"
cat "$WORK/logs/compare.txt"
step "held-back cases (40, never seen): Dice per label (1 anterior, 2 posterior), mean; nnUNetv2_predict wall time"
for pair in $PAIRS; do
  tr=${pair%%:*}; out=$WORK/held_back/pred_$tr
  secs=$(cat "$out/predict_seconds.txt" 2>/dev/null || echo "?")
  "$PY" -c "import json,sys; s=json.load(open(sys.argv[1])); m=s['mean']; print(f\"{sys.argv[2]:48s} {m['1']['Dice']:.4f} {m['2']['Dice']:.4f} mean {s['foreground_mean']['Dice']:.4f}  predict {sys.argv[3]} s\")" "$out/summary.json" "$tr" "$secs"
done | tee "$WORK/report/held_back.txt"
step "seconds per epoch (median)"
for log in search retrain stock stock_adam retrain_sgd stock_long transfer; do
  f=$WORK/logs/$log.txt; [ -f "$f" ] || continue
  "$PY" -c "import re,statistics,sys; t=[float(v) for v in re.findall(r'Epoch time: ([0-9.]+) s', open(sys.argv[1]).read())]; print(f'{sys.argv[2]:12s} {statistics.median(t) if t else float(\"nan\"):7.1f} s/epoch')" "$f" "$log"
done | tee "$WORK/report/epoch_times.txt"
