"""`emotion-train distill`: train a small student on the ensemble's probabilities (knowledge distillation).

Targets per image: (1 - t) * [(1 - a) * one-hot(FER2013 label) + a * FER+ votes, smoothed] + t * teacher,
with the teacher's probabilities computed once by `emotion-train teacher` (cached, see teacher.py).
Everything else (honest splits, holdout, augmentation, class weights, time-budgeted cosine schedule,
checkpoints every epoch) is `fit`'s. A rerun of the same command continues from the last checkpoint.
"""
from __future__ import annotations

from pathlib import Path

from . import fit, teacher
from .sources import parse_spec


def run_distill(args) -> int:
    primary = parse_spec(args.data[0])[1]   # the teacher's probabilities are for the primary source's rows
    args.teacher_probs = teacher.load_or_compute(primary, args.teacher_cache, args.teacher)
    args.resume = args.resume or (Path(args.run_dir) / 'checkpoints' / 'state.json').exists()
    fit.run_fit(args)
    return 0


def add_arguments(p):
    fit.add_arguments(p)
    p.set_defaults(arch='student', width=20, precision='auto', threads=2, ferplus_weight=0.3,
                   label_smoothing=0.05, epochs=120)
    p.add_argument('--teacher', default=teacher.DEFAULT_TEACHER, help='shipped model name or .tflite path')
    p.add_argument('--teacher-cache', default='runs/teacher_probs.npz',
                   help='npz cache of the teacher probabilities (created when missing or stale; keep it out of git)')
    p.add_argument('--teacher-weight', type=float, default=0.6,
                   help='weight t of the teacher probabilities in the targets (0 = plain fit)')
