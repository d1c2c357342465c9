#!/usr/bin/env bash
# The runs behind docs/faithfulness.md: the 200 shared validation images (dataset=shared_sample),
# every saliency method with the localisation metrics and the faithfulness ones (deletion,
# insertion, ROAD), then the randomisation test (task=sanity) on the first 50 images. Only the
# ground-truth class's map is scored by every column of the table, so one class is localised
# per image (tta.top_k=1: the ground-truth class is always added; the GT-known error,
# MaxBoxAccV2, the pointing game and the faithfulness figures do not depend on top_k).
# SmoothGrad and integrated gradients at the accuracy study's cheaper settings (8 samples /
# 16 steps, 2 crops). Each run writes $OUT/<name>/; a finished run is skipped, a killed one
# resumed. Run them one after the other:
#   bash bench/faithfulness_study.sh [NAME ...]      # default: all, in the order below
#   python bench/faithfulness_table.py $OUT           # the table of docs/faithfulness.md
# Environment: PY (python), OUT (outputs/faithfulness), WSOL_BENCH_SHARED (the shared data
# folder, default ../shared beside the checkout).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
PY=${PY:-$REPO/.venv/bin/python}
OUT=${OUT:-$REPO/outputs/faithfulness}
DATA=(dataset=shared_sample)
METRICS='evaluation.metrics=[ilsvrc,maxboxacc,pointing_game,deletion,insertion,road]'
SANITY_METHODS='sanity.methods=[gradient,gradient_x_input,smoothgrad,integrated_gradients,guided_backprop,gradcam,cam,random]'

localise() { name=$1; shift; dir=$OUT/$name; [ -f "$dir/metrics.json" ] && return
  resume=false; [ -f "$dir/records/manifest.json" ] && resume=true
  PYTHONPATH=$REPO $PY -m wsol_bench "${DATA[@]}" tta.top_k=1 evaluation.ilsvrc.max_guesses=1 "$METRICS" run.figures=0 run.progress=false \
    "engine.cache_dir=$OUT/.saliency_cache" "hydra.run.dir=$dir" run.resume=$resume "$@"; }

sanity() { dir=$OUT/sanity; [ -f "$dir/sanity.json" ] && return
  PYTHONPATH=$REPO $PY -m wsol_bench task=sanity "${DATA[@]}" dataset.limit=50 "$SANITY_METHODS" \
    sanity.params.smoothgrad.n_samples=8 sanity.params.integrated_gradients.n_steps=16 "hydra.run.dir=$dir"; }

one() {
  case $1 in
    random) localise random saliency=random ;;
    cam) localise cam saliency=cam ;;
    gradcam) localise gradcam saliency=gradcam ;;
    gradient) localise gradient saliency=gradient ;;
    gradient_x_input) localise gradient_x_input saliency=gradient_x_input ;;
    guided_backprop) localise guided_backprop saliency=guided_backprop ;;
    smoothgrad) localise smoothgrad saliency=smoothgrad saliency.noise_tunnel.n_samples=8 tta.crops=2 ;;
    integrated_gradients) localise integrated_gradients saliency=integrated_gradients saliency.n_steps=16 tta.crops=2 ;;
    sanity) sanity ;;
    *) echo "unknown run $1" >&2; exit 2 ;;
  esac
}
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(random cam gradcam gradient gradient_x_input guided_backprop smoothgrad integrated_gradients sanity)
for n in "${names[@]}"; do one "$n"; done
