#!/usr/bin/env bash
# Does the search beat random genotypes of equal cost? (issue 12; docs/BENCHMARKS.md, section 6)
#
# Hippocampus (../shared/data/Dataset004_Hippocampus, MSD Task04): the first NTRAIN (default 100)
# cases become Dataset605_HippoSearch; the last 40 are held back (never planned, searched, trained
# or validated on). Fold 0: the search (weights on 4/5, alpha on 1/5 of the fold's training cases,
# the recipe's alpha learning-rate rule for its 100 alpha steps), then the searched genotype and
# N_RANDOM (5) random genotypes drawn with `nnunet_scnas random-genotype --match` (parameters and
# FLOPs within 10 %) are retrained on one budget, loss and optimiser, and predicted on the
# held-back cases with nnUNetv2_predict and scored with nnUNetv2_evaluate_folder. Seeded, with
# augmentation in-process: a rerun gives the same numbers. Finished stages are kept.
#
#   bash bench/search_vs_random.sh      # about an hour on 2 cores
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/_hippocampus.sh"  # REPO SHARED NTRAIN PY BIN, the data checked; step run prepare_hippocampus
WORK=${WORK:-$PWD/search_vs_random}
export nnUNet_raw=$WORK/nnUNet_raw nnUNet_preprocessed=$WORK/nnUNet_preprocessed nnUNet_results=$WORK/nnUNet_results
export nnUNet_extTrainer=$HERE/search_vs_random_trainers${nnUNet_extTrainer:+:$nnUNet_extTrainer}
export nnUNet_def_n_proc=${nnUNet_def_n_proc:-2} nnUNet_compile=0 PYTHONUNBUFFERED=1
D=605; NAME=Dataset605_HippoSearch; RAW=$nnUNet_raw/$NAME; PLANS=nnUNetPlansSCNASBatch2
mkdir -p "$WORK/report" "$WORK/genotypes"
timed() { local name=$1; shift; local t0=$SECONDS; run "$name" "$@"; echo $((SECONDS - t0)) > "$WORK/logs/$name.seconds"; }
prepare_hippocampus
"$PY" - "$nnUNet_preprocessed/$NAME" "$PLANS" <<'PY'
import json, sys
folder, name = sys.argv[1:]
p = json.load(open(f"{folder}/nnUNetPlansSCNAS.json"))
p["plans_name"] = name
p["configurations"]["3d_fullres"]["batch_size"] = 2  # nnU-Net plans 9 here: too slow on a CPU
json.dump(p, open(f"{folder}/{name}.json", "w"), indent=1)
PY
PATCH=$("$PY" -c "import json,sys; print(','.join(map(str, json.load(open(sys.argv[1]))['configurations']['3d_fullres']['patch_size'])))" "$nnUNet_preprocessed/$NAME/$PLANS.json")
train() {  # train NAME TRAINER [VAR=VALUE ...]: fold 0, skipped if it finished before
  local name=$1 tr=$2; shift 2
  local out=$nnUNet_results/$NAME/${tr}__${PLANS}__3d_fullres/fold_0
  if [ -f "$out/validation/summary.json" ]; then step "$name: finished before"; return; fi
  # augmentation in-process (0 workers): reproducible batches (nnU-Net's planner needs >= 1, so only here)
  timed "$name" env nnUNet_n_proc_DA=0 "$@" "$BIN/nnUNetv2_train" $D 3d_fullres 0 --c -device cpu -tr "$tr" -p "$PLANS"
}
train search nnUNetTrainerSCNASSearch_svr
SEARCHED=$nnUNet_results/$NAME/nnUNetTrainerSCNASSearch_svr__${PLANS}__3d_fullres/fold_0/genotype.json
"$BIN/nnunet_scnas" show "$SEARCHED" --no-images | tee "$WORK/report/searched_genotype.txt"
train retrain_searched nnUNetTrainerSCNASRetrain_svr
PAIRS="searched:nnUNetTrainerSCNASRetrain_svr"
for k in 0 1 2 3 4; do
  g=$WORK/genotypes/random$k.json
  [ -f "$g" ] || "$BIN/nnunet_scnas" random-genotype --seed $((1000 * (k + 1))) --match "$SEARCHED" --stem 8 \
      --patch "$PATCH" --channels 1 --classes 3 -o "$g" > "$WORK/logs/random$k.txt"
  head -1 "$WORK/logs/random$k.txt"
  train retrain_random$k nnUNetTrainerSCNASRetrain_svrRandom$k SCNAS_GENOTYPE="$g"
  PAIRS="$PAIRS random$k:nnUNetTrainerSCNASRetrain_svrRandom$k"
done
for pair in $PAIRS; do
  tr=${pair##*:}; out=$WORK/held_back/pred_$tr
  [ -f "$out/summary.json" ] && continue
  run "predict_$tr" "$BIN/nnUNetv2_predict" -i "$WORK/held_back/images" -o "$out" -d $D -c 3d_fullres -f 0 -tr "$tr" -p "$PLANS" -device cpu -npp 1 -nps 1 --disable_progress_bar --disable_tta
  run "evaluate_$tr" "$BIN/nnUNetv2_evaluate_folder" "$WORK/held_back/labels" "$out" -djfile "$out/dataset.json" -pfile "$out/plans.json" -np 1
done
step "held-back Dice (40 cases never seen), fold-0 validation Dice, cost, wall time"
"$PY" - "$WORK" "$NAME" "$PLANS" $PAIRS <<'PY' | tee "$WORK/report/search_vs_random.md"
import json, os, statistics, sys
from nnunet_scnas import Genotype
from nnunet_scnas.tools.cost import derived_cost
work, name, plans, *pairs = sys.argv[1:]
res = os.environ["nnUNet_results"]
patch = json.load(open(f"{os.environ['nnUNet_preprocessed']}/{name}/{plans}.json"))["configurations"]["3d_fullres"]["patch_size"]
rows = []
for pair in pairs:
    label, tr = pair.split(":")
    fold = f"{res}/{name}/{tr}__{plans}__3d_fullres/fold_0"
    held = json.load(open(f"{work}/held_back/pred_{tr}/summary.json"))
    val = json.load(open(f"{fold}/validation/summary.json"))
    params, flops = derived_cost(Genotype.load(f"{fold}/genotype.json"), 8, [1, *patch], 3)
    secs = open(f"{work}/logs/retrain_{label}.seconds").read().strip()
    rows.append((label, held["mean"]["1"]["Dice"], held["mean"]["2"]["Dice"], held["foreground_mean"]["Dice"],
                 val["foreground_mean"]["Dice"], params, flops, secs))
print("| genotype | held-back Dice 1 | Dice 2 | mean | fold-0 val. mean | parameters | GFLOPs/patch | retrain s |")
print("|---|---|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r[0]} | {r[1]:.4f} | {r[2]:.4f} | {r[3]:.4f} | {r[4]:.4f} | {r[5]} | {r[6] / 1e9:.3f} | {r[7]} |")
rand = [r[3] for r in rows[1:]]
searched = rows[0][3]
rank = 1 + sum(d > searched for d in rand)
search_s = open(f"{work}/logs/search.seconds").read().strip()
print(f"\nrandom genotypes: held-back mean Dice {statistics.mean(rand):.4f} +- {statistics.stdev(rand):.4f} (n={len(rand)}); "
      f"searched {searched:.4f}, rank {rank} of {len(rows)}; search wall time {search_s} s")
PY
