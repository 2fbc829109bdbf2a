"""Teacher probabilities for distillation: a shipped (ensemble) .tflite model run once over a dataset.

The teacher (default `emotion_accurate`: two networks, each on the face and its mirror, int8) is
mirror-symmetric, so its probabilities for a face also hold for the mirrored face the augmentation
makes. The cache is an npz keyed by the data file's size/mtime and the model's bytes, re-created by
`emotion-train teacher --data D --out FILE` (or on demand by `emotion-train distill`).
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np

DEFAULT_TEACHER = 'emotion_accurate'


def _key(data_path, model_path) -> str:
    st = os.stat(data_path)
    h = hashlib.blake2b(Path(model_path).read_bytes(), digest_size=8).hexdigest()
    return f'{Path(data_path).name}:{st.st_size}:{int(st.st_mtime)}:{h}'


def compute(data_path, model_path, batch: int = 64) -> tuple:
    """Teacher probabilities for every row of the npz (all splits), in the model's label order."""
    from tqdm import tqdm

    from emotion_ros.core.emotion.model import EmotionModel

    from .data import load_npz
    ds = load_npz(data_path)
    model = EmotionModel(model_path, num_threads=2, max_batch=batch)
    if list(model.labels) != list(ds.classes):
        raise ValueError(f'teacher labels {model.labels} differ from the data classes {ds.classes}')
    out = np.zeros((len(ds), model.num_classes), np.float32)
    for i in tqdm(range(0, len(ds), batch), desc='teacher', unit='batch', mininterval=10):
        out[i:i + batch] = model.predict(ds.images[i:i + batch])
    return out, list(model.labels)


def load_or_compute(data_path, cache_path, model: str = DEFAULT_TEACHER) -> np.ndarray:
    """Cached teacher probabilities (N, C) for the npz rows; recomputed when data or model changed."""
    from emotion_ros.core.emotion.model import resolve_model_path
    model_path = resolve_model_path(model)
    key = _key(data_path, model_path)
    cache_path = Path(cache_path)
    if cache_path.is_file():
        with np.load(cache_path, allow_pickle=False) as z:
            if str(z['key']) == key:
                return z['probs']
        print(f'{cache_path}: stale (data or teacher changed), recomputing', file=sys.stderr)
    probs, labels = compute(data_path, model_path)
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache_path.with_name(f'.{cache_path.name}.{os.getpid()}.tmp.npz')
    np.savez_compressed(tmp, probs=probs, labels=np.array(labels), key=np.array(key))
    os.replace(tmp, cache_path)
    return probs


def run_teacher(args) -> int:
    from .data import load_npz
    probs = load_or_compute(args.data, args.out, args.teacher)
    ds = load_npz(args.data)
    report = {'out': str(args.out), 'rows': int(len(probs))}
    if ds.split is not None:
        for part in ('train', 'val'):
            m = ds.split == part
            report[f'{part}_accuracy'] = round(float((probs[m].argmax(1) == ds.labels[m]).mean()), 4)
    print(json.dumps(report))
    return 0


def add_arguments(p):
    p.add_argument('--data', required=True, help='npz in the shared format')
    p.add_argument('--out', required=True, help='cache file (npz; keep it out of git, e.g. runs/ or /tmp)')
    p.add_argument('--teacher', default=DEFAULT_TEACHER, help='shipped model name or .tflite path')
