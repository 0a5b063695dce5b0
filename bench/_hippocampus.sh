# Shared by the hippocampus benchmark scripts (sourced right after they set HERE): where the
# data and Python are, logging, and the copy of the shared MSD Task04 cases into the script's
# own nnUNet_raw plus a held-back folder, then nnU-Net's and SCNAS's planning
# (prepare_hippocampus needs WORK D NAME RAW nnUNet_preprocessed set).
REPO=$(dirname "$HERE")
SHARED=${SHARED:-$REPO/../shared/data/Dataset004_Hippocampus}
NTRAIN=${NTRAIN:-100}
PY=${PYTHON:-python}
BIN=$(dirname "$(command -v "$PY")")
[ -d "$SHARED" ] || { echo "$(basename "$0" .sh): no data at $SHARED (set SHARED=...)" >&2; exit 1; }
step() { echo "[$(date +%H:%M:%S)] $*"; }
run() { local log=$WORK/logs/$1.txt; shift; step "$* (log: $log)"; "$@" >"$log" 2>&1 || { tail -20 "$log"; echo "FAILED: $*" >&2; exit 1; }; }

# the first NTRAIN cases (sorted) become the dataset, the last 40 of the 200 are held back:
# never planned, trained or validated on
prepare_hippocampus() {
  mkdir -p "$WORK/logs" "$RAW/imagesTr" "$RAW/labelsTr" "$WORK/held_back/images" "$WORK/held_back/labels"
  if [ ! -f "$RAW/dataset.json" ]; then
    step "copying $NTRAIN training and 40 held-back cases"
    mapfile -t CASES < <(ls "$SHARED/labelsTr" | sed 's/.nii.gz$//' | sort)
    for c in "${CASES[@]:0:NTRAIN}"; do cp "$SHARED/imagesTr/${c}_0000.nii.gz" "$RAW/imagesTr/"; cp "$SHARED/labelsTr/$c.nii.gz" "$RAW/labelsTr/"; done
    for c in "${CASES[@]:160:40}"; do cp "$SHARED/imagesTr/${c}_0000.nii.gz" "$WORK/held_back/images/"; cp "$SHARED/labelsTr/$c.nii.gz" "$WORK/held_back/labels/"; done
    "$PY" -c "import json,sys; d=json.load(open(sys.argv[1])); d['numTraining']=int(sys.argv[3]); json.dump(d, open(sys.argv[2],'w'), indent=1)" "$SHARED/dataset.json" "$RAW/dataset.json" "$NTRAIN"
  fi
  [ -f "$nnUNet_preprocessed/$NAME/nnUNetPlans.json" ] || run plan "$BIN/nnUNetv2_plan_and_preprocess" -d $D -c 3d_fullres -np 2
  [ -f "$nnUNet_preprocessed/$NAME/nnUNetPlansSCNAS.json" ] || run plan_scnas "$BIN/nnUNetv2_plan_scnas" -d $D
}
