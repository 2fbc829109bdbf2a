"""Several training sources in one run: per-source splits, label handling, sampling weights and targets.

A source is `[NAME=]PATH[:WEIGHT]` (`--data`, repeatable). The first one is the primary: its classes are the
model's, and `fit`'s honest splits (val / stratified holdout, train copies of val images dropped) apply to it
when it has a `split` array. A source without a split array but with a `subject` array is split by subject
(`--val-subjects F` of its people go to its val set, never by image: one KDEF actor's two sessions are
near-copies; one LFW person has ~600 photos). A source with neither trains only.

WEIGHT is the expected number of draws of each of its training images per epoch (1 = once; 8 = eight
whole passes; 0.25 = a quarter, drawn fresh each epoch), so a 238-image studio set can count in an epoch
beside 27 k web faces without copying arrays. WEIGHT 0 on a later source makes all of it a validation set.

Labels: classes are matched by canonical name; rows of a class the model lacks (muxspace's contempt) are
dropped and counted. FER+ vote distributions are mixed into the targets of rows that carry them
(`--ferplus-weight`), teacher probabilities (distillation) only into rows of sources that have them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import data as D


@dataclass
class Source:
    name: str
    path: str
    weight: float
    train: D.Dataset
    val: D.Dataset | None = None
    holdout: D.Dataset | None = None
    info: dict = field(default_factory=dict)


_SPEC = re.compile(r'^(?:(?P<name>[A-Za-z][\w-]*)=)?(?P<path>.+?)(?::(?P<weight>\d+(?:\.\d+)?))?$')


def parse_spec(spec: str) -> tuple:
    """'kdef=../kdef_dev.npz:8' -> ('kdef', '../kdef_dev.npz', 8.0); name defaults to the file's stem
    up to its first '_' (fer2013_trainval.npz -> fer2013), weight to 1."""
    m = _SPEC.match(spec.strip())
    if not m:
        raise SystemExit(f'--data {spec!r}: expected [NAME=]PATH[:WEIGHT]')
    path = m['path']
    name = m['name'] or Path(path).stem.split('_')[0]
    weight = float(m['weight']) if m['weight'] is not None else 1.0
    return name, path, weight


def align_classes(ds: D.Dataset, classes: list) -> tuple:
    """ds relabelled onto `classes` (by canonical name); rows of classes not in `classes` dropped.
    Returns (dataset, {dropped class: count})."""
    if list(ds.classes) == list(classes):
        return ds, {}
    to = np.array([classes.index(c) if c in classes else -1 for c in ds.classes], np.int64)
    mapped = to[ds.labels]
    dropped = {c: int((ds.labels == i).sum()) for i, c in enumerate(ds.classes) if to[i] < 0}
    keep = mapped >= 0
    out = ds.subset(keep)
    out.labels = mapped[keep]
    out.classes = list(classes)
    return out, {c: n for c, n in dropped.items() if n}


def subject_split(ds: D.Dataset, val_fraction: float, seed: int) -> tuple:
    """(train, val, info): a `val_fraction` of the people (sorted, then shuffled by `seed`) go to val.
    Unknown people (subject '' or '-1') stay in train: they cannot be kept apart."""
    subj = np.asarray(ds.subject).astype(str)
    known = sorted({s for s in subj.tolist() if s not in ('', '-1')})
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(known))
    k = int(round(len(known) * val_fraction))
    val_people = {known[i] for i in order[:k]}
    is_val = np.array([s in val_people for s in subj.tolist()], bool)
    info = {'val_subjects': sorted(val_people), 'train_subjects': len(known) - k,
            'train': int((~is_val).sum()), 'val': int(is_val.sum())}
    return ds.subset(~is_val), ds.subset(is_val), info


def parse_fractions(text) -> tuple:
    """'0.5' -> (0.5, {}); '0.5,mux=0.1' -> (0.5, {'mux': 0.1}): a default and per-source overrides."""
    default, named = 0.5, {}
    for part in str(text).split(','):
        part = part.strip()
        if not part:
            continue
        name, _, value = part.rpartition('=')
        try:
            v = float(value)
        except ValueError:
            raise SystemExit(f'--val-subjects {text!r}: {value!r} is not a number') from None
        if not 0.0 <= v < 1.0:
            raise SystemExit(f'--val-subjects {text!r}: fractions must be in [0, 1)')
        if name:
            named[name] = v
        else:
            default = v
    return default, named


def load_sources(specs: list, holdout: float, split_seed: int, val_subjects, subject_seed: int,
                 teacher=None) -> list:
    """Every --data source, split and relabelled onto the primary's classes; `teacher` (N, C) probabilities
    for the primary's rows travel with them through the split (distillation)."""
    default_fraction, fractions = parse_fractions(val_subjects)
    sources, classes = [], None
    for i, spec in enumerate(specs):
        name, path, weight = parse_spec(spec)
        if any(s.name == name for s in sources):
            raise SystemExit(f'--data: two sources named {name!r}: name one of them (NAME=PATH)')
        ds = D.load_npz(path)
        dropped = {}
        if classes is None:
            classes = list(ds.classes)
            if teacher is not None:
                if len(teacher) != len(ds):
                    raise SystemExit(f'teacher probabilities cover {len(teacher)} rows, {path} has {len(ds)}')
                ds.teacher = np.asarray(teacher, np.float32)
        else:
            ds, dropped = align_classes(ds, classes)
        src = Source(name, path, weight, ds, info={'rows': int(len(ds)), 'dropped_classes': dropped})
        if weight == 0 and i > 0:
            src.train, src.val = ds.subset(np.zeros(len(ds), bool)), ds
            src.info.update({'train': 0, 'val': int(len(ds)), 'split_by': 'none (weight 0: validation only)'})
        elif ds.split is not None and (ds.split == 'val').any():
            src.train, src.holdout, src.val, split_info = D.honest_splits(ds, holdout if i == 0 else 0.0, split_seed)
            src.info.update(split_info | {'split_by': 'split array (val) + stratified holdout'})
        elif ds.subject is not None and fractions.get(name, default_fraction) > 0:
            fraction = fractions.get(name, default_fraction)
            src.train, src.val, split_info = subject_split(ds, fraction, subject_seed)
            src.info.update(split_info | {'split_by': f'subject ({fraction:.0%} of the people to val)'})
        else:
            src.info.update({'train': int(len(ds)), 'val': 0, 'split_by': 'none (train only)'})
        if not len(src.val if src.val is not None else []):
            src.val = None
        sources.append(src)
    return sources


def source_targets(src: Source, label_smoothing: float, ferplus_weight: float, teacher_weight: float) -> np.ndarray:
    t = teacher_weight if src.train.teacher is not None else 0.0
    return D.make_targets(src.train, label_smoothing, ferplus_weight, t)


def epoch_plan(sizes: list, weights: list, epoch: int, seed: int) -> np.ndarray:
    """Indices into the concatenated training sets for one epoch, shuffled: each source's images
    `weight` times on average (whole passes without replacement, the fraction drawn fresh per epoch)."""
    rng = np.random.default_rng([seed, epoch])
    parts, offset = [], 0
    for n, w in zip(sizes, weights):
        whole, frac = int(w), w - int(w)
        for _ in range(whole):
            parts.append(offset + np.arange(n))
        k = int(round(frac * n))
        if k:
            parts.append(offset + rng.choice(n, size=k, replace=False))
        offset += n
    idx = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    return idx[rng.permutation(len(idx))]


def epoch_size(sizes: list, weights: list) -> int:
    return int(sum(int(w) * n + int(round((w - int(w)) * n)) for n, w in zip(sizes, weights)))


def mixed_dataset(images, targets, weights, sizes, source_weights, batch_size, seed, first_epoch, augment,
                  robot_camera: bool = False):
    """tf.data of (x, y, sample_weight) batches following `epoch_plan`, epoch after epoch from
    `first_epoch` (so a resumed run draws what an uninterrupted one would have)."""
    import tensorflow as tf
    per_epoch = epoch_size(sizes, source_weights)
    steps = -(-per_epoch // batch_size)

    def batches():
        epoch = first_epoch
        while True:
            idx = epoch_plan(sizes, source_weights, epoch, seed)
            for s in range(steps):
                b = idx[s * batch_size:(s + 1) * batch_size]
                yield images[b][..., None].astype(np.float32), targets[b], weights[b]
            epoch += 1

    c = targets.shape[1]
    ds = tf.data.Dataset.from_generator(batches, output_signature=(
        tf.TensorSpec((None, 48, 48, 1), tf.float32), tf.TensorSpec((None, c), tf.float32),
        tf.TensorSpec((None,), tf.float32)))
    if augment:
        seeds = tf.data.Dataset.random(seed=seed + first_epoch)
        ds = tf.data.Dataset.zip((ds, seeds))
        ds = ds.map(lambda abc, s: (D.augment_batch(abc[0], s, robot_camera=robot_camera), abc[1], abc[2]),
                    num_parallel_calls=1)
    return ds.prefetch(2), steps
