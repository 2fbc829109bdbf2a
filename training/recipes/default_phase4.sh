#!/usr/bin/env bash
# Phase 4 of the default: stochastic weight averaging. From the shipped soup, one more low-rate pass (phase 3's targets with a
# stronger FER2013 teacher) that keeps every epoch (--keep-epochs); `emotion-train soup` over the epochs then averages the
# trajectory. Phase 3's single epochs plateaued at 67.6-68.3 % on FER2013 val while the average of three of its
# checkpoints reached 69.2 %: the gain is in the averaging, not in more epochs. Resumable like phase 1.
#   training/recipes/default_phase4.sh [extra fit args]     (INIT=..., BUDGET_MIN=..., THREADS=...)
set -euo pipefail
cd "$(dirname "$0")/../.."
S=../shared/datasets
EMOTION_TRAIN=${EMOTION_TRAIN:-.venv/bin/emotion-train}
# The teacher (FER2013 rows only) is the strongest FER2013 model we have had: the two-network ensemble on the face
# and its mirror (70.0 % FER2013 val), shipped as emotion_accurate until 9acfe78 and re-created from git history.
TEACHER=${TEACHER:-runs/teacher_ensemble.tflite}
if [ ! -f "$TEACHER" ]; then
  mkdir -p runs
  git show f5387cb:emotion_ros/models/emotion_accurate.tflite > "$TEACHER"
  git show f5387cb:emotion_ros/models/emotion_accurate.labels.txt > "${TEACHER%.tflite}.labels.txt"
fi
RESUME=(); [ -f runs/phase4/checkpoints/state.json ] && RESUME=(--resume)
exec $EMOTION_TRAIN distill \
  --data $S/fer2013/fer2013_trainval.npz --data kdef=$S/kdef_dev/kdef_dev.npz:2 --data mux=$S/muxspace/muxspace_fe.npz:0.1 \
  --val-subjects 0.5,mux=0.1 --subject-seed 1 --select-on fer2013 \
  --teacher "$TEACHER" --teacher-cache runs/teacher_ensemble.npz --teacher-weight 0.6 --ferplus-weight 0.3 --label-smoothing 0.05 \
  --init-from ${INIT:-emotion_ros/models/emotion.tflite} --arch emonet --width 32 --precision float32 \
  --epochs 60 --time-budget-min ${BUDGET_MIN:-95} --batch-size 128 --lr 2e-4 --weight-decay 0.05 --class-weight sqrt \
  --holdout 0.05 --seed 11 --split-seed 1 --threads ${THREADS:-1} --keep-epochs --run-dir runs/phase4 "${RESUME[@]}" "$@"
