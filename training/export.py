"""`emotion-train export`: .keras -> .tflite (float32 and int8 with a representative dataset) plus a
labels file per model, then a check that each exported model agrees with the Keras one."""
from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path

import numpy as np

from emotion_ros.core.emotion.labels import canonical_label

FLOAT_MIN_AGREEMENT = 0.99
INT8_MIN_AGREEMENT = 0.95


def keras_labels(model_path) -> list:
    """Labels of a .keras model: `<stem>.labels.txt` or `labels.txt` beside it, else the run's metrics.json."""
    model_path = Path(model_path)
    for cand in (model_path.with_name(model_path.stem + '.labels.txt'), model_path.with_name('labels.txt')):
        if cand.is_file():
            return [canonical_label(x) for x in cand.read_text().splitlines() if x.strip()]
    metrics = model_path.with_name('metrics.json')
    if metrics.is_file():
        classes = json.loads(metrics.read_text()).get('classes')
        if classes:
            return [canonical_label(c) for c in classes]
    raise FileNotFoundError(f'no labels for {model_path}: put one class name per line in '
                            f'{model_path.with_name(model_path.stem + ".labels.txt")}')


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f'.{path.name}.{os.getpid()}.tmp')
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _sample(data_path, n: int, split_pref: str, seed: int) -> np.ndarray:
    from .data import load_npz
    ds = load_npz(data_path)
    if ds.split is not None and (ds.split == split_pref).any():
        ds = ds.subset(ds.split == split_pref)
    idx = np.random.default_rng(seed).choice(len(ds), size=min(n, len(ds)), replace=False)
    return ds.images[np.sort(idx)]


def with_flip_tta(model):
    """The model averaged over the face and its mirror image: a cheap, standard accuracy gain for
    expressions (they are near-symmetric) at twice the inference cost."""
    import keras

    class MirrorAverage(keras.layers.Layer):
        def __init__(self, inner, **kw):
            super().__init__(**kw)
            self.inner = inner

        def call(self, x):
            return (self.inner(x) + self.inner(keras.ops.flip(x, axis=2))) * 0.5

    inputs = keras.Input(model.input_shape[1:], name='face')
    return keras.Model(inputs, MirrorAverage(model, name='mirror_average')(inputs), name=f'{model.name}_tta')


def averaged(models, name: str = 'ensemble'):
    """One graph that averages the members' class probabilities: independently trained networks make
    partly different mistakes, so their mean is more accurate than any member, at the sum of their costs."""
    import keras

    class Average(keras.layers.Layer):
        def __init__(self, members, **kw):
            super().__init__(**kw)
            self.members = list(members)

        def call(self, x):
            return keras.ops.mean(keras.ops.stack([m(x) for m in self.members], axis=0), axis=0)

    if len(models) == 1:
        return models[0]
    inputs = keras.Input(models[0].input_shape[1:], name='face')
    return keras.Model(inputs, Average(models, name='member_average')(inputs), name=name)


def convert(model, int8: bool, representative: np.ndarray | None = None) -> bytes:
    import tensorflow as tf
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if int8:
        if representative is None or not len(representative):
            raise ValueError('int8 export needs representative images (--data)')
        rep = representative[..., None].astype(np.float32)

        def gen():
            for i in range(len(rep)):
                yield [rep[i:i + 1]]
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = gen
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    with contextlib.redirect_stdout(sys.stderr):   # the converter prints its SavedModel path
        return conv.convert()


def agreement(keras_model, tflite_path, images: np.ndarray) -> dict:
    from emotion_ros.core.emotion.model import EmotionModel
    ref = keras_model.predict(images[..., None].astype(np.float32), batch_size=256, verbose=0)
    got = EmotionModel(tflite_path, num_threads=2).predict(images)
    return {'n': int(len(images)),
            'top1_agreement': float((ref.argmax(1) == got.argmax(1)).mean()),
            'max_abs_prob_diff': float(np.abs(ref - got).max()),
            'mean_abs_prob_diff': float(np.abs(ref - got).mean())}


def load_members(model_paths) -> tuple:
    """Load one or more .keras models that must agree on labels and input shape."""
    import keras
    paths = [Path(p) for p in ([model_paths] if isinstance(model_paths, (str, Path)) else model_paths)]
    if not paths:
        raise ValueError('no --model given')
    models, labels = [], None
    for path in paths:
        model = keras.models.load_model(path)
        these = keras_labels(path)
        if labels is not None and these != labels:
            raise ValueError(f'{path} has labels {these}, but {paths[0]} has {labels}: members must agree')
        if models and model.input_shape != models[0].input_shape:
            raise ValueError(f'{path} takes {model.input_shape}, but {paths[0]} takes {models[0].input_shape}')
        models.append(model)
        labels = these
    return models, labels, paths


def export(model_path, out_dir, name: str = 'emotion', data=None, int8: bool = True, float32: bool = True,
           sample: int = 500, representative: int = 500, seed: int = 0, tta_flip: bool = False) -> dict:
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
    out_dir = Path(out_dir)
    members, labels, paths = load_members(model_path)
    source = str(paths[0]) if len(paths) == 1 else [str(p) for p in paths]
    model = averaged(members, name=f'{name}_ensemble')
    if tta_flip:
        model = with_flip_tta(model)
    n_out = int(model.output_shape[-1])
    if n_out != len(labels):
        raise ValueError(f'{source} outputs {n_out} classes but its labels file lists {len(labels)}')
    out_dir.mkdir(parents=True, exist_ok=True)
    rep = _sample(data, representative, 'train', seed) if data else None
    check = _sample(data, sample, 'val', seed + 1) if data else None
    report = {'model': source, 'labels': labels, 'tta_flip': tta_flip, 'outputs': {}}
    variants = ([(name, False)] if float32 else []) + ([(f'{name}_int8', True)] if int8 else [])
    for stem, quant in variants:
        path = out_dir / f'{stem}.tflite'
        _atomic_write(path, convert(model, quant, rep))
        _atomic_write(out_dir / f'{stem}.labels.txt', ('\n'.join(labels) + '\n').encode())
        entry = {'path': str(path), 'bytes': path.stat().st_size}
        if check is not None:
            entry['agreement'] = agreement(model, path, check)
            need = INT8_MIN_AGREEMENT if quant else FLOAT_MIN_AGREEMENT
            entry['ok'] = entry['agreement']['top1_agreement'] >= need
        report['outputs'][stem] = entry
    return report


def run_export(args) -> int:
    try:
        report = export(args.model, args.out_dir, args.name, args.data, int8=not args.no_int8,
                        float32=not args.no_float, sample=args.sample, representative=args.representative,
                        tta_flip=args.tta_flip)
    except (OSError, ValueError) as exc:
        print(f'emotion-train export: {exc}', file=sys.stderr)
        return 2
    print(json.dumps(report, indent=1))
    bad = [s for s, e in report['outputs'].items() if e.get('ok') is False]
    if bad:
        print(f'emotion-train export: {", ".join(bad)} disagree with the Keras model beyond the limit '
              f'(float >= {FLOAT_MIN_AGREEMENT}, int8 >= {INT8_MIN_AGREEMENT} top-1 agreement)', file=sys.stderr)
        return 1
    if args.data is None:
        print('note: no --data given, so agreement was not checked', file=sys.stderr)
    return 0


def add_arguments(p):
    p.add_argument('--model', required=True, action='append',
                   help='.keras model (labels file beside it or the run\'s metrics.json); give it more than once '
                        'to export the average of several models (an ensemble) as one graph')
    p.add_argument('--out-dir', required=True)
    p.add_argument('--name', default='emotion', help='file stem: NAME.tflite, NAME_int8.tflite (+ .labels.txt)')
    p.add_argument('--data', help='npz: train rows calibrate int8, val rows check agreement')
    p.add_argument('--sample', type=int, default=500, help='images used for the agreement check')
    p.add_argument('--representative', type=int, default=500, help='train images that set the int8 ranges (the '
                   'default of issue 23 was exported with 2000: +0.1 FER2013 val over 500)')
    p.add_argument('--no-int8', action='store_true')
    p.add_argument('--tta-flip', action='store_true', help='bake mirror-image averaging into the exported model')
    p.add_argument('--no-float', action='store_true')
