#!/usr/bin/env bash
# A stronger teacher where a GPU is lent (nothing depends on it): emonet at width 64 (~4x the default's
# multiply-adds), trained from scratch on the same three sources as the default, mixed precision, large
# batches, a 9-minute wall-clock budget (the cosine schedule ends on time). Prepared and tested on the CPU with
# SMOKE=1 (test/training/test_recipes.py); on a GPU machine first: pip install 'tensorflow[and-cuda]==2.21.0'.
#   training/recipes/gpu_teacher.sh [RUN_DIR]            -> RUN_DIR/best.keras, metrics.json (default runs/gpu_teacher)
# Then: emotion-train export --model RUN_DIR/best.keras --out-dir RUN_DIR/export --name emotion --tta-flip --data FER
# and distil from it: emotion-train teacher --teacher RUN_DIR/export/emotion_int8.tflite ...
set -euo pipefail
cd "$(dirname "$0")/../.."
RUN=${1:-runs/gpu_teacher}
S=${DATASETS:-../shared/datasets}
EMOTION_TRAIN=${EMOTION_TRAIN:-.venv/bin/emotion-train}
if [ "${SMOKE:-0}" = 1 ]; then      # the CPU check of this exact command line: tiny, two epochs
  SIZE=(--width 8 --epochs 2 --batch-size 32 --limit-train 256 --limit-val 128 --precision float32)
else
  SIZE=(--width 64 --epochs 120 --time-budget-min 9 --batch-size 512 --precision mixed_float16)
fi
exec $EMOTION_TRAIN fit \
  --data $S/fer2013/fer2013_trainval.npz --data kdef=$S/kdef_dev/kdef_dev.npz:6 --data mux=$S/muxspace/muxspace_fe.npz:0.3 \
  --val-subjects 0.5,mux=0.1 --subject-seed 1 --select-on fer2013,kdef --robot-camera-aug \
  --ferplus-weight 0.5 --label-smoothing 0.1 --arch emonet --lr 3e-3 --weight-decay 0.05 --class-weight sqrt \
  --holdout 0.05 --seed 11 --split-seed 1 --run-dir "$RUN" "${SIZE[@]}"
