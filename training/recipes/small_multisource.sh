#!/usr/bin/env bash
# emotion_small (student w20, 38.8 M multiply-adds): the shipped student trained further on the default's three
# sources, the ensemble teacher on FER2013 rows, kdef_dev and muxspace labels elsewhere. Resumable (rerun).
#   training/recipes/small_multisource.sh [extra fit args]
set -euo pipefail
cd "$(dirname "$0")/../.."
S=../shared/datasets
EMOTION_TRAIN=${EMOTION_TRAIN:-.venv/bin/emotion-train}
exec $EMOTION_TRAIN distill \
  --data $S/fer2013/fer2013_trainval.npz --data kdef=$S/kdef_dev/kdef_dev.npz:6 --data mux=$S/muxspace/muxspace_fe.npz:0.3 \
  --val-subjects 0.5,mux=0.1 --subject-seed 1 --select-on fer2013,kdef \
  --teacher-cache runs/teacher_accurate.npz --teacher-weight 0.6 --ferplus-weight 0.3 --label-smoothing 0.05 \
  --init-from emotion_ros/models/emotion_small.float32.tflite --arch student --width 20 --precision float32 \
  --epochs 60 --time-budget-min ${BUDGET_MIN:-28} --batch-size 128 --lr 5e-4 --weight-decay 0.05 --class-weight sqrt \
  --holdout 0.05 --seed 7 --split-seed 1 --threads ${THREADS:-1} --run-dir runs/small "$@"
