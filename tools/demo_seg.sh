#!/usr/bin/env bash
# Segmentation under domain shift on the embedded shapes benchmark (CPU, no downloads):
# timm resnet18 + SegFormer head trained source-only on the 'clean' style vs DAFormer-style
# self-training (EMA teacher, ClassMix, confidence-weighted pseudo-labels) on the unlabeled
# fog/dark/texture styles, same iterations and labeled batch; mIoU per domain, plain and
# with per-domain BN statistics (tools/test.py --adabn).
#   SEEDS="0 1 2" ITERS=400 BURN=200 tools/demo_seg.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ITERS=${ITERS:-400}
BURN=${BURN:-200}
OUT=${OUT:-work_dirs/demo_seg}
source tools/demo_dense_lib.sh  # PY, SEEDS, BACKBONE, common, demo_run
for seed in $SEEDS; do
  demo_run configs/seg/segformer_r18_shapes_source_only.py source_only model.backbone
  demo_run configs/seg/segformer_r18_shapes_classmix.py classmix model.segmentor.backbone \
    model.burn_in_iters="$BURN"
done
"$PY" tools/demo_dense_summary.py "$OUT" mIoU
