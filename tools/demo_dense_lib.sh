# Shared by tools/demo_det.sh and tools/demo_seg.sh (sourced after the caller set ITERS and OUT;
# demo_run needs the loop variable seed).
PY=${PY:-.venv/bin/python}
SEEDS=${SEEDS:-0}
# One intra-op thread unless the caller sets OMP_NUM_THREADS: the thread count changes the order
# of float reductions and so the whole trajectory (det mean teacher seed 0, same code: target
# AP50 24.23 with 1 thread, 20.57 with 2; docs/dense.md). docs/dense.md quotes 1-thread runs.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
BACKBONE=${BACKBONE:-resnet10t}  # timm name; resnet10t: same channels as resnet18, ~1.7x faster
common=(train_cfg.max_iters="$ITERS" train_cfg.val_interval="$ITERS"
        default_hooks.checkpoint.interval="$ITERS")
# demo_run CONFIG METHOD BACKBONE_KEY [cfg-option ...]: train CONFIG for this seed into
# $OUT/METHOD/seed$seed, then evaluate that checkpoint with BN statistics of each domain's own
# unlabeled images (tools/test.py --adabn) into $OUT/METHOD+adabn/seed$seed.
demo_run() {
  local config=$1 method=$2 key=$3
  shift 3
  "$PY" tools/train.py "$config" --work-dir "$OUT/$method/seed$seed" \
    --cfg-options randomness.seed="$seed" "${common[@]}" "$key.model_name=$BACKBONE" "$@"
  "$PY" tools/test.py "$config" "$OUT/$method/seed$seed/iter_$ITERS.pth" --adabn \
    --work-dir "$OUT/$method+adabn/seed$seed" --cfg-options "$key.model_name=$BACKBONE"
}
