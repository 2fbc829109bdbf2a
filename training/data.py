"""Datasets in the shared npz format: loading, honest splits, targets (hard, smoothed or FER+ soft)
and the augmentation pipeline used by `fit`.
"""
import hashlib
from dataclasses import dataclass

import numpy as np

from emotion_ros.core.emotion.labels import canonical_label


class DatasetError(ValueError):
    """The npz is missing arrays or holds inconsistent ones."""


@dataclass
class Dataset:
    images: np.ndarray          # uint8 (N, 48, 48)
    labels: np.ndarray          # int, index into classes
    classes: list
    split: np.ndarray | None = None
    ferplus_votes: np.ndarray | None = None
    ferplus_classes: list | None = None
    teacher: np.ndarray | None = None      # float32 (N, C) teacher probabilities (distillation)
    subject: np.ndarray | None = None      # str (N,) the person in the image, where the source names them

    def subset(self, mask_or_idx) -> 'Dataset':
        pick = lambda a: None if a is None else a[mask_or_idx]  # noqa: E731
        return Dataset(self.images[mask_or_idx], self.labels[mask_or_idx], list(self.classes),
                       pick(self.split), pick(self.ferplus_votes), self.ferplus_classes, pick(self.teacher),
                       pick(self.subject))

    def __len__(self):
        return len(self.labels)


def load_npz(path) -> Dataset:
    """Read a dataset in the shared format; class names are mapped to canonical spellings."""
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = {'images', 'labels', 'classes'} - set(z.files)
            if missing:
                raise DatasetError(f'{path}: missing arrays {sorted(missing)}')
            images = z['images']
            labels = z['labels'].astype(np.int64)
            classes = [canonical_label(c) for c in z['classes'].tolist()]
            split = z['split'].astype(str) if 'split' in z.files else None
            votes = z['ferplus_votes'] if 'ferplus_votes' in z.files else None
            vclasses = z['ferplus_classes'].tolist() if 'ferplus_classes' in z.files else None
            subject = z['subject'].astype(str) if 'subject' in z.files else None
    except (OSError, ValueError) as e:
        if isinstance(e, DatasetError):
            raise
        raise DatasetError(f'{path}: not a readable npz ({e})') from e
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DatasetError(f'{path}: images must be uint8 (N,H,W), got {images.dtype} {images.shape}')
    if len(labels) != len(images):
        raise DatasetError(f'{path}: {len(images)} images but {len(labels)} labels')
    if len(labels) and (labels.min() < 0 or labels.max() >= len(classes)):
        raise DatasetError(f'{path}: labels outside 0..{len(classes) - 1}')
    return Dataset(images, labels, classes, split, votes, vclasses, subject=subject)


def image_hashes(images: np.ndarray) -> list:
    return [hashlib.blake2b(im.tobytes(), digest_size=16).digest() for im in images]


def honest_splits(ds: Dataset, holdout_fraction: float, seed: int):
    """train / holdout / val. Train images byte-identical to a val image are dropped (they would make
    val numbers optimistic); a stratified slice of train is held out as a second, untouched check."""
    if ds.split is None:
        raise DatasetError('dataset has no split array; cannot select on val')
    train_idx = np.flatnonzero(ds.split == 'train')
    val_idx = np.flatnonzero(ds.split == 'val')
    val_hashes = set(image_hashes(ds.images[val_idx]))
    train_hashes = image_hashes(ds.images[train_idx])
    leak = np.array([h in val_hashes for h in train_hashes], dtype=bool)
    train_idx = train_idx[~leak]
    rng = np.random.default_rng(seed)
    hold = []
    if holdout_fraction > 0:
        for c in range(len(ds.classes)):
            members = train_idx[ds.labels[train_idx] == c]
            k = int(round(len(members) * holdout_fraction))
            hold.extend(rng.choice(members, size=k, replace=False).tolist())
    hold = np.array(sorted(hold), dtype=np.int64)
    train_idx = np.setdiff1d(train_idx, hold)
    info = {'dropped_train_duplicates_of_val': int(leak.sum()), 'train': int(len(train_idx)),
            'holdout': int(len(hold)), 'val': int(len(val_idx))}
    return ds.subset(train_idx), ds.subset(hold), ds.subset(val_idx), info


def ferplus_distribution(ds: Dataset) -> tuple:
    """FER+ vote distributions over ds.classes, and a mask of rows that have usable votes
    (rows without FER+ or whose votes are all contempt/unknown/not-a-face have none)."""
    n, c = len(ds), len(ds.classes)
    dist = np.zeros((n, c), np.float32)
    if ds.ferplus_votes is None or ds.ferplus_classes is None:
        return dist, np.zeros(n, bool)
    for j, name in enumerate(ds.ferplus_classes):
        name = canonical_label(name)
        if name in ds.classes:
            dist[:, ds.classes.index(name)] = np.clip(ds.ferplus_votes[:, j], 0, None)
    total = dist.sum(1)
    ok = (ds.ferplus_votes.min(1) >= 0) & (total > 0)
    dist[ok] /= total[ok, None]
    return dist, ok


def make_targets(ds: Dataset, label_smoothing: float = 0.0, ferplus_weight: float = 0.0,
                 teacher_weight: float = 0.0) -> np.ndarray:
    """Per-image target distributions: (1-a) * one-hot(original) + a * FER+ votes, then smoothing,
    then (1-t) * that + t * teacher probabilities (knowledge distillation; needs ds.teacher)."""
    c = len(ds.classes)
    y = np.eye(c, dtype=np.float32)[ds.labels]
    if ferplus_weight > 0:
        dist, ok = ferplus_distribution(ds)
        y[ok] = (1 - ferplus_weight) * y[ok] + ferplus_weight * dist[ok]
    if label_smoothing > 0:
        y = (1 - label_smoothing) * y + label_smoothing / c
    if teacher_weight > 0:
        if ds.teacher is None or ds.teacher.shape != y.shape:
            raise DatasetError(f'teacher_weight {teacher_weight} needs teacher probabilities of shape {y.shape}')
        t = ds.teacher.astype(np.float32)
        t = t / np.maximum(t.sum(1, keepdims=True), 1e-12)
        y = (1 - teacher_weight) * y + teacher_weight * t
    return y


def class_weights(labels: np.ndarray, num_classes: int, mode: str, sample_weight=None) -> np.ndarray:
    """Per-class loss weights (mean 1 over samples). 'sqrt' = inverse square-root frequency: lifts
    rare classes (disgust is 1.5 % of FER2013) without giving up much accuracy as 'balanced' does.
    `sample_weight`: how often each row is drawn per epoch (several sources at their sampling weights)."""
    sw = np.ones(len(labels)) if sample_weight is None else np.asarray(sample_weight, np.float64)
    counts = np.bincount(labels, weights=sw, minlength=num_classes).astype(np.float64)
    counts = np.maximum(counts, 1)
    if mode == 'none':
        w = np.ones(num_classes)
    elif mode == 'balanced':
        w = 1.0 / counts
    elif mode == 'sqrt':
        w = 1.0 / np.sqrt(counts)
    else:
        raise ValueError(f'unknown class-weight mode {mode!r}')
    w = w / (np.average(w[labels], weights=sw) if sw.sum() > 0 else 1.0)
    return w.astype(np.float32)


def _seed(seed, k):
    import tensorflow as tf
    return tf.stack([tf.cast(seed, tf.int64), tf.constant(k, tf.int64)])


def augment_batch(x, seed, strength: float = 1.0, robot_camera: bool = False):
    """Geometric + photometric augmentation of a float batch (B,48,48,1) in 0..255, vectorised.

    Flip, small rotation/zoom/shift (faces from a detector are never perfectly aligned), contrast and
    brightness jitter (webcam exposure), and random erasing (occlusion by hands, glasses, watermarks).
    """
    import tensorflow as tf
    b = tf.shape(x)[0]
    s = float(strength)
    x = tf.where(tf.random.stateless_uniform([b, 1, 1, 1], _seed(seed, 1)) < 0.5,
                 tf.reverse(x, axis=[2]), x)
    angle = tf.random.stateless_uniform([b], _seed(seed, 2), -0.26 * s, 0.26 * s)  # +-15 deg
    scale = tf.random.stateless_uniform([b], _seed(seed, 3), 1 - 0.12 * s, 1 + 0.12 * s)
    shift = tf.random.stateless_uniform([b, 2], _seed(seed, 4), -4.0 * s, 4.0 * s)
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    cx = cy = 23.5
    tx = cx - cos * cx + sin * cy + shift[:, 0]
    ty = cy - sin * cx - cos * cy + shift[:, 1]
    zeros = tf.zeros_like(cos)
    transform = tf.stack([cos, -sin, tx, sin, cos, ty, zeros, zeros], axis=1)
    x = tf.raw_ops.ImageProjectiveTransformV3(images=x, transforms=transform, output_shape=[48, 48],
                                              fill_value=0.0, interpolation='BILINEAR', fill_mode='REFLECT')
    contrast = tf.random.stateless_uniform([b, 1, 1, 1], _seed(seed, 5), 1 - 0.3 * s, 1 + 0.3 * s)
    bright = tf.random.stateless_uniform([b, 1, 1, 1], _seed(seed, 6), -25.0 * s, 25.0 * s)
    mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
    x = (x - mean) * contrast + mean + bright
    size = tf.random.stateless_uniform([b, 1, 1, 1], _seed(seed, 7), 8.0, 20.0)
    centre = tf.random.stateless_uniform([b, 2], _seed(seed, 8), 0.0, 48.0)
    rows = tf.reshape(tf.range(48, dtype=tf.float32), [1, 48, 1, 1])
    cols = tf.reshape(tf.range(48, dtype=tf.float32), [1, 1, 48, 1])
    inside = ((tf.abs(rows - tf.reshape(centre[:, 0], [b, 1, 1, 1])) < size / 2)
              & (tf.abs(cols - tf.reshape(centre[:, 1], [b, 1, 1, 1])) < size / 2))
    erase = tf.random.stateless_uniform([b, 1, 1, 1], _seed(seed, 9)) < 0.5 * min(s, 1.0)
    x = tf.where(inside & erase, mean, x)
    if robot_camera:
        x = robot_camera_batch(x, seed)
    return tf.clip_by_value(x, 0.0, 255.0)


def robot_camera_batch(x, seed):
    """What a robot's camera does to a face that web photos and studio shots rarely show: light from one
    side (a linear brightness ramp of up to +-45 grey levels across the face), defocus or motion blur
    (3x3 / 5x5 Gaussian, blended in by a random amount), sensor noise (Gaussian, sigma up to 10) and JPEG
    compression (quality 30-90, a third of the faces). Each applies to about half of the batch."""
    import tensorflow as tf
    b = tf.shape(x)[0]
    u = lambda k, shape, lo=0.0, hi=1.0: tf.random.stateless_uniform(shape, _seed(seed, k), lo, hi)  # noqa: E731
    theta = u(20, [b, 1, 1, 1], 0.0, 6.2832)
    amp = u(21, [b, 1, 1, 1], -45.0, 45.0) * tf.cast(u(22, [b, 1, 1, 1]) < 0.5, tf.float32)
    grid = tf.range(48, dtype=tf.float32) / 47.0 - 0.5
    ramp = tf.cos(theta) * tf.reshape(grid, [1, 1, 48, 1]) + tf.sin(theta) * tf.reshape(grid, [1, 48, 1, 1])
    x = x + amp * ramp
    g3 = tf.constant([1., 2., 1.]) / 4.0
    g5 = tf.constant([1., 4., 6., 4., 1.]) / 16.0
    k3 = tf.reshape(g3[:, None] * g3[None, :], [3, 3, 1, 1])
    k5 = tf.reshape(g5[:, None] * g5[None, :], [5, 5, 1, 1])
    blur3 = tf.nn.conv2d(x, k3, 1, 'SAME')
    blur5 = tf.nn.conv2d(x, k5, 1, 'SAME')
    mix = u(23, [b, 1, 1, 1]) * tf.cast(u(24, [b, 1, 1, 1]) < 0.5, tf.float32)
    x = tf.where(u(25, [b, 1, 1, 1]) < 0.5, (1 - mix) * x + mix * blur3, (1 - mix) * x + mix * blur5)
    sigma = u(26, [b, 1, 1, 1], 0.0, 10.0) * tf.cast(u(27, [b, 1, 1, 1]) < 0.5, tf.float32)
    x = x + sigma * tf.random.stateless_normal(tf.shape(x), _seed(seed, 28))
    x = tf.clip_by_value(x, 0.0, 255.0)
    quality = tf.cast(u(29, [b], 30.0, 90.0), tf.int32)
    jpeg = tf.map_fn(lambda iq: tf.image.adjust_jpeg_quality(iq[0] / 255.0, iq[1]) * 255.0, (x, quality),
                     fn_output_signature=tf.float32)
    return tf.where(u(30, [b, 1, 1, 1]) < 0.33, tf.reshape(jpeg, tf.shape(x)), x)


def train_dataset(images, targets, weights, batch_size: int, seed: int, augment: bool = True):
    """Shuffled, batched, augmented tf.data pipeline of (x, y, sample_weight)."""
    import tensorflow as tf
    x = images[..., None].astype(np.float32)
    ds = tf.data.Dataset.from_tensor_slices((x, targets, weights))
    ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True).batch(batch_size)
    if augment:
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        ds = tf.data.Dataset.zip((ds, seeds))
        ds = ds.map(lambda abc, s: (augment_batch(abc[0], s), abc[1], abc[2]), num_parallel_calls=1)
    return ds.prefetch(2)
