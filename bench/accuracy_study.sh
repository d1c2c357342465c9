#!/usr/bin/env bash
# The runs behind docs/tuning.md and docs/paper_gap.md: the 200 shared validation images
# (dataset=shared_sample), every saliency method under the same box extractors, crops,
# networks and the paper's settings. Each run writes outputs/study/<name>/; maps are cached,
# so the runs that reuse a method's maps only segment. Then:
#   python bench/study_table.py outputs/study/* --split 100
# (images 1-100 tune, 101-200 confirm). About 1.5 to 2 hours on 2 CPU cores (docs/tuning.md).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
# a finished run is skipped; a killed one is resumed (same settings, or it is refused)
run() { name=$1; shift; dir=outputs/study/$name; [ -f $dir/metrics.json ] && return
  resume=false; [ -f $dir/records/manifest.json ] && resume=true
  $PY -m wsol_bench dataset=shared_sample run.figures=0 run.progress=false hydra.run.dir=$dir run.resume=$resume "$@"; }

# the paper's gradient, 10 crops: the defaults, the paper's settings, the baselines
run gradient_graphcut
run gradient_paper +experiment=ilsvrc2013 dataset=shared_sample
run gradient_threshold segmentation=threshold
run gradient_grabcut segmentation=grabcut
run center segmentation=center
run full_image segmentation=full_image
# crops
run gradient_2crops_graphcut tta.crops=2
run gradient_1crop_graphcut tta.crops=1
# methods
for m in cam gradcam guided_backprop gradient_x_input; do
  run ${m}_graphcut saliency=$m
  run ${m}_threshold saliency=$m segmentation=threshold
done
# the two best settings on images 1-100 (bench/explore_segmentation.py on the CAM maps), run in full
run cam_graphcut_sigma0 saliency=cam segmentation.smooth_sigma=0
run cam_threshold_025 saliency=cam segmentation=threshold segmentation.threshold=0.25 segmentation.smooth_sigma=0
run smoothgrad_2crops_graphcut saliency=smoothgrad saliency.noise_tunnel.n_samples=8 tta.crops=2
run smoothgrad_2crops_threshold saliency=smoothgrad saliency.noise_tunnel.n_samples=8 tta.crops=2 segmentation=threshold
run integrated_gradients_2crops_graphcut saliency=integrated_gradients saliency.n_steps=16 tta.crops=2
run integrated_gradients_2crops_threshold saliency=integrated_gradients saliency.n_steps=16 tta.crops=2 segmentation=threshold
# networks, at their native input sizes
run lite1_gradient_graphcut model=efficientnet_lite1 tta.resize=272 tta.crop=240
run lite2_gradient_graphcut model=efficientnet_lite2 tta.resize=292 tta.crop=260
