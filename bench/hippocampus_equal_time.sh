#!/usr/bin/env bash
# SCNAS against stock nnU-Net at equal wall time on hippocampus (issue 13; docs/BENCHMARKS.md, section 8).
#
# The cases of bench/search_vs_random.sh: the first NTRAIN (default 100) of
# ../shared/data/Dataset004_Hippocampus become Dataset605_HippoSearch, the last 40 are held back
# (never planned, searched, trained or validated on). Fold 0, batch 2 for all, on this machine:
#   stock   nnU-Net's recipe and plans (32-256 features here), 1000 iterations; its seconds of training epochs = T
#   (a)     the demo's genotype (docs/demo_genotype.json, or TRANSFER_GENOTYPE=...) retrained at
#           stem 24 until T (SCNAS_WALL_TIME), its learning rate decayed to zero over T
#   (b)     the search on this fold (S seconds), then its genotype retrained as (a) until T - S
#   (c)     the control: a uniform random genotype of (a)'s parameters and FLOPs (within 10 %,
#           `nnunet_scnas random-genotype --match`), retrained as (a) until T; N_CONTROL=2 or 3
#           draws more controls (30 minutes each)
# then all four predict the held-back cases (nnUNetv2_predict) and nnUNetv2_evaluate_folder scores
# them. Finished stages are kept: a rerun continues. Run it alone: T is a wall time.
# ABLATION=1 adds (a) at stem 16 (about 30 minutes more).
#
#   bash bench/hippocampus_equal_time.sh      # 100-120 minutes on 2 cores
set -euo pipefail
case "${N_CONTROL:-1}" in 1|2|3) ;; *) echo "hippocampus_equal_time: N_CONTROL must be 1, 2 or 3 (one trainer each in equal_time_trainers), got $N_CONTROL" >&2; exit 2;; esac
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/_hippocampus.sh"  # REPO SHARED NTRAIN PY BIN, the data checked; step run prepare_hippocampus
WORK=${WORK:-$PWD/hippocampus_equal_time}
TRANSFER_GENOTYPE=${TRANSFER_GENOTYPE:-$REPO/docs/demo_genotype.json}
export nnUNet_raw=$WORK/nnUNet_raw nnUNet_preprocessed=$WORK/nnUNet_preprocessed nnUNet_results=$WORK/nnUNet_results
export nnUNet_extTrainer=$HERE/equal_time_trainers${nnUNet_extTrainer:+:$nnUNet_extTrainer}
export nnUNet_def_n_proc=${nnUNet_def_n_proc:-2} nnUNet_compile=0 PYTHONUNBUFFERED=1
D=605; NAME=Dataset605_HippoSearch; RAW=$nnUNet_raw/$NAME
mkdir -p "$WORK/report"
prepare_hippocampus
# batch 2 for both methods (nnU-Net plans 9 here: too slow on a CPU)
"$PY" - "$nnUNet_preprocessed/$NAME" <<'PY'
import json, sys
folder = sys.argv[1]
for src, dst in (("nnUNetPlans", "nnUNetPlansBatch2"), ("nnUNetPlansSCNAS", "nnUNetPlansSCNASBatch2")):
    p = json.load(open(f"{folder}/{src}.json"))
    p["plans_name"] = dst
    p["configurations"]["3d_fullres"]["batch_size"] = 2
    json.dump(p, open(f"{folder}/{dst}.json", "w"), indent=1)
PY
fold() { echo "$nnUNet_results/$NAME/${1}__${2}__3d_fullres/fold_0"; }
seconds() {  # seconds of training epochs, checkpoint writes included, as SCNAS_WALL_TIME counts them
  "$PY" -c "import sys, torch; from nnunet_scnas.trainers.common import epoch_seconds; \
l = torch.load(sys.argv[1], map_location='cpu', weights_only=False)['logging']; \
print(round(epoch_seconds(l['epoch_start_timestamps'], l['epoch_end_timestamps'])))" "$1/checkpoint_final.pth"
}
train() {  # train NAME TRAINER PLANS [VAR=VALUE ...]: fold 0, one augmentation worker, skipped if finished
  local name=$1 tr=$2 pl=$3; shift 3
  if [ -f "$(fold "$tr" "$pl")/checkpoint_final.pth" ]; then step "$name: finished before"; return; fi
  local t0=$SECONDS  # the whole command: set-up, epochs and final validation
  run "$name" env nnUNet_n_proc_DA=1 "$@" "$BIN/nnUNetv2_train" $D 3d_fullres 0 --c -device cpu -tr "$tr" -p "$pl"
  echo $((SECONDS - t0)) > "$WORK/logs/$name.seconds"
}
train stock nnUNetTrainer_et nnUNetPlansBatch2
T=$(seconds "$(fold nnUNetTrainer_et nnUNetPlansBatch2)")
step "stock nnU-Net: $T s of training epochs (T)"
train transfer nnUNetTrainerSCNASRetrain_etTransfer nnUNetPlansSCNASBatch2 SCNAS_GENOTYPE="$TRANSFER_GENOTYPE" SCNAS_WALL_TIME=$T
train search nnUNetTrainerSCNASSearch_et nnUNetPlansSCNASBatch2
S=$(seconds "$(fold nnUNetTrainerSCNASSearch_et nnUNetPlansSCNASBatch2)")
step "search: $S s; its retrain gets $((T - S)) s"
[ $((T - S)) -gt 0 ] || { echo "hippocampus_equal_time: the search alone took T ($S >= $T s): nothing left for (b)" >&2; exit 1; }
train searched nnUNetTrainerSCNASRetrain_etSearched nnUNetPlansSCNASBatch2 SCNAS_WALL_TIME=$((T - S))
PAIRS="stock:nnUNetTrainer_et:nnUNetPlansBatch2 transfer:nnUNetTrainerSCNASRetrain_etTransfer:nnUNetPlansSCNASBatch2"
PAIRS="$PAIRS searched:nnUNetTrainerSCNASRetrain_etSearched:nnUNetPlansSCNASBatch2"
mkdir -p "$WORK/genotypes"
for k in $(seq 1 "${N_CONTROL:-1}"); do  # (c): control, control2, ... (seeds 13000, 14000, ...)
  label=control; [ "$k" = 1 ] || label=control$k
  g=$WORK/genotypes/$label.json
  [ -f "$g" ] || "$BIN/nnunet_scnas" random-genotype --seed $((12000 + 1000 * k)) --match "$TRANSFER_GENOTYPE" \
      --stem 24 --patch 40,56,40 --channels 1 --classes 3 -o "$g" > "$WORK/logs/${label}_genotype.txt"
  step "$label: $(head -1 "$WORK/logs/${label}_genotype.txt")"
  tr=nnUNetTrainerSCNASRetrain_et${label^}
  train "$label" "$tr" nnUNetPlansSCNASBatch2 SCNAS_GENOTYPE="$g" SCNAS_WALL_TIME=$T
  PAIRS="$PAIRS $label:$tr:nnUNetPlansSCNASBatch2"
done
if [ "${ABLATION:-0}" = 1 ]; then  # (a) at stem 16 as well: the schedule's gain without the width's
  train transfer16 nnUNetTrainerSCNASRetrain_etTransfer16 nnUNetPlansSCNASBatch2 SCNAS_GENOTYPE="$TRANSFER_GENOTYPE" SCNAS_WALL_TIME=$T
  PAIRS="$PAIRS transfer16:nnUNetTrainerSCNASRetrain_etTransfer16:nnUNetPlansSCNASBatch2"
fi
for pair in $PAIRS; do
  IFS=: read -r label tr pl <<<"$pair"; out=$WORK/held_back/pred_$label
  [ -f "$out/summary.json" ] && continue
  t0=$SECONDS
  run "predict_$label" "$BIN/nnUNetv2_predict" -i "$WORK/held_back/images" -o "$out" -d $D -c 3d_fullres -f 0 -tr "$tr" -p "$pl" -device cpu -npp 1 -nps 1 --disable_progress_bar --disable_tta
  echo $((SECONDS - t0)) > "$WORK/logs/predict_$label.seconds"
  run "evaluate_$label" "$BIN/nnUNetv2_evaluate_folder" "$WORK/held_back/labels" "$out" -djfile "$out/dataset.json" -pfile "$out/plans.json" -np 1
done
step "equal wall time: held-back Dice (40 cases never seen), fold-0 validation Dice, cost"
"$PY" - "$WORK" "$NAME" "$S" $PAIRS <<'PY' | tee "$WORK/report/equal_time.md"
import json, os, sys, torch
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
from nnunet_scnas.tools.cost import count_flops, count_parameters
from nnunet_scnas.trainers.common import epoch_seconds
work, name, search_s, *pairs = sys.argv[1:]
res, pre = os.environ["nnUNet_results"], os.environ["nnUNet_preprocessed"]
print(f"machine: {os.cpu_count()} cores; {open('/proc/cpuinfo').read().split('model name')[1].split(':')[1].splitlines()[0].strip()}")
print("| | held-back Dice 1 | Dice 2 | mean | fold-0 val. mean | iterations | training s | GFLOPs/patch | parameters | predict 40 cases, s |")
print("|---|---|---|---|---|---|---|---|---|---|")
means = {}
for pair in pairs:
    label, tr, pl = pair.split(":")
    fold = f"{res}/{name}/{tr}__{pl}__3d_fullres/fold_0"
    ck = torch.load(f"{fold}/checkpoint_final.pth", map_location="cpu", weights_only=False)
    log = ck["logging"]
    secs = epoch_seconds(log["epoch_start_timestamps"], log["epoch_end_timestamps"])
    plans = json.load(open(f"{fold}/../plans.json"))
    cfg = plans["configurations"]["3d_fullres"]
    arch = cfg["architecture"]
    net = get_network_from_plans(arch["network_class_name"], arch["arch_kwargs"], arch["_kw_requires_import"], 1, 3,
                                 allow_init=False, deep_supervision=False)
    held = json.load(open(f"{work}/held_back/pred_{label}/summary.json"))
    val = json.load(open(f"{fold}/validation/summary.json"))
    pred_s = open(f"{work}/logs/predict_{label}.seconds").read().strip()
    note = f" (+ search {search_s} s)" if label == "searched" else ""
    print(f"| {label} | {held['mean']['1']['Dice']:.4f} | {held['mean']['2']['Dice']:.4f} | {held['foreground_mean']['Dice']:.4f} "
          f"| {val['foreground_mean']['Dice']:.4f} | {len(log['epoch_end_timestamps']) * 20} | {secs:.0f}{note} "
          f"| {count_flops(net, [1, 1, *cfg['patch_size']]) / 1e9:.2f} | {count_parameters(net)} | {pred_s} |")
    means[label] = held["foreground_mean"]["Dice"]
controls = [v for k, v in means.items() if k.startswith("control")]
print(f"\nheld-back mean Dice: stock {means['stock']:.4f}, (a) transferred {means['transfer']:.4f}, (b) searched "
      f"{means['searched']:.4f}, (c) random controls of (a)'s cost {', '.join(f'{v:.4f}' for v in controls)}")
PY
