#!/usr/bin/env bash
# The one-network default (emonet w32, 110 M multiply-adds): member 2 (emotion_fast) trained further on FER2013
# (FER+ votes + the ensemble teacher), half of the kdef_dev actors and in-the-wild muxspace faces.
# Resumable: rerun the same command after an interruption and it continues from runs/<variant>/checkpoints.
#   training/recipes/default_multisource.sh VARIANT [extra fit args]   (VARIANT: robotaug | plainaug)
set -euo pipefail
cd "$(dirname "$0")/../.."
VARIANT=${1:?variant}; shift
S=../shared/datasets
RUN=runs/$VARIANT
EMOTION_TRAIN=${EMOTION_TRAIN:-.venv/bin/emotion-train}
[ -f runs/teacher_accurate.npz ] || $EMOTION_TRAIN teacher --data $S/fer2013/fer2013_trainval.npz --out runs/teacher_accurate.npz
AUG=(); [ "$VARIANT" = robotaug ] && AUG=(--robot-camera-aug)
exec $EMOTION_TRAIN distill \
  --data $S/fer2013/fer2013_trainval.npz --data kdef=$S/kdef_dev/kdef_dev.npz:6 --data mux=$S/muxspace/muxspace_fe.npz:0.3 \
  --val-subjects 0.5,mux=0.1 --subject-seed 1 --select-on fer2013,kdef \
  --teacher-cache runs/teacher_accurate.npz --teacher-weight 0.5 --ferplus-weight 0.5 --label-smoothing 0.05 \
  --init-from emotion_ros/models/emotion_fast.tflite --arch emonet --width 32 --precision float32 \
  --epochs 60 --time-budget-min ${BUDGET_MIN:-55} --batch-size 128 --lr 5e-4 --weight-decay 0.05 --class-weight sqrt \
  --holdout 0.05 --seed 5 --split-seed 1 --threads ${THREADS:-1} --run-dir $RUN "${AUG[@]}" "$@"
