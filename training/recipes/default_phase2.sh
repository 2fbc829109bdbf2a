#!/usr/bin/env bash
# Phase 2 of the default: the plainaug run's last epoch, a short low-learning-rate pass weighted back towards
# FER2013 (teacher 0.6, FER+ 0.3 as member 2 had) while kdef_dev stays in the mix. Resumable like phase 1.
#   training/recipes/default_phase2.sh [extra fit args]
set -euo pipefail
cd "$(dirname "$0")/../.."
S=../shared/datasets
EMOTION_TRAIN=${EMOTION_TRAIN:-.venv/bin/emotion-train}
RESUME=(); [ -f runs/phase2/checkpoints/state.json ] && RESUME=(--resume)
exec $EMOTION_TRAIN distill \
  --data $S/fer2013/fer2013_trainval.npz --data kdef=$S/kdef_dev/kdef_dev.npz:3 --data mux=$S/muxspace/muxspace_fe.npz:0.1 \
  --val-subjects 0.5,mux=0.1 --subject-seed 1 --select-on fer2013,kdef \
  --teacher-cache runs/teacher_accurate.npz --teacher-weight 0.6 --ferplus-weight 0.3 --label-smoothing 0.05 \
  --init-from ${INIT:-runs/plainaug/checkpoints/last.keras} --arch emonet --width 32 --precision float32 \
  --epochs 30 --time-budget-min ${BUDGET_MIN:-16} --batch-size 128 --lr 1.5e-4 --weight-decay 0.05 --class-weight sqrt \
  --holdout 0.05 --seed 6 --split-seed 1 --threads ${THREADS:-2} --run-dir runs/phase2 "${RESUME[@]}" "$@"
