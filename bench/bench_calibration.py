"""What `emotion-train calibrate` buys on another camera, and what it costs on the training domain (issue 26).

Cross-camera: kdef_dev actors the model never trained on. The default trains on half of kdef_dev's 34 actors
(by-subject split, seed 1, as bench_accuracy's "kdef held-out actors"), so only the other 17 take part
(`--kdef-actors all` for a model that saw no kdef_dev face). For k = 1, 3, 5, 10 calibration actors (all their
faces, --draws random draws each) the calibration is fitted exactly as the CLI fits it (candidates chosen by leave-subjects-out CV
inside the k actors; by session when k = 1), then the other actors are scored with and without it. A draw
the CLI refuses (held-out gain <= 0) counts as gain 0: no file, the model as it is.
Same domain: 300 random FER2013 val faces calibrate (folds by image: FER2013 names no people), the other
3,289 val faces test.
Same people (the robot's own household): k actors calibrate on one of their two sessions and are tested on the
other (folds by file-order chunk, as for a recorder folder).

Usage: .venv/bin/python bench/bench_calibration.py [--model PATH] [--draws 10] [--out bench/results/<kind>/calibration.json]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / 'bench'))

from machine import cpu_kind, machine_info, write_results  # noqa: E402

from emotion_ros.core.emotion.calibration import cosine_to, file_sha256, log_probs  # noqa: E402
from emotion_ros.core.emotion.model import EmotionModel, resolve_model_path  # noqa: E402
from emotion_ros.training.data import Dataset  # noqa: E402
from emotion_ros.training.sources import subject_split  # noqa: E402
from emotion_ros.training.calibrate import CalibrationRefused, calibrate_logits, file_order_chunks, fold_groups  # noqa: E402

SHARED = ROOT.parent / 'shared' / 'datasets'
KDEF = SHARED / 'kdef_dev' / 'kdef_dev.npz'
FER = SHARED / 'fer2013' / 'fer2013_trainval.npz'


def _accuracy(z, y, fit=None, e=None):
    if fit is not None:
        z = z @ fit['weight'].T + fit['bias']
        if fit['method'] == 'prototypes':
            z = z + fit['alpha'] * cosine_to(e, fit['prototypes'])
    return float((z.argmax(1) == y).mean())


def _trial(z, y, cal, groups, how, test=None, e=None):
    """(gain in points on `test` (default ~cal), baseline, calibrated, method or 'refused: ...'); with the
    embeddings `e` the CLI's prototypes compete too (as they do for a model that exposes them)."""
    test = ~cal if test is None else test
    base = _accuracy(z[test], y[test])
    try:
        fit = calibrate_logits(z[cal], y[cal], [str(i) for i in range(z.shape[1])], groups, folds_by=how,
                               embedding=None if e is None else e[cal])
    except CalibrationRefused as exc:
        return 0.0, base, base, f'refused: {exc}'
    after = _accuracy(z[test], y[test], fit, None if e is None else e[test])
    return 100 * (after - base), base, after, fit['method']


def _scores(model, images):
    """(log-probabilities, embeddings or None) as the CLI computes them."""
    if model.embedding_dim:
        probs, e = model.predict_with_embedding(images)
        return log_probs(probs), e
    return log_probs(model.predict(images)), None


def _summary(rows):
    g = np.array([r['gain_points'] for r in rows])
    methods = {}
    for r in rows:
        key = 'refused' if r['method'].startswith('refused') else r['method']
        methods[key] = methods.get(key, 0) + 1
    return {'mean_gain': float(g.mean()), 'min_gain': float(g.min()), 'max_gain': float(g.max()),
            'mean_baseline': float(np.mean([r['baseline'] for r in rows])),
            'mean_calibrated': float(np.mean([r['calibrated'] for r in rows])), 'methods': methods, 'draws': rows}


def _kdef_faces(actors: str):
    """images, labels, subject, session of the kdef_dev actors taking part."""
    with np.load(KDEF) as d:
        images, labels = d['images'], d['labels'].astype(np.int64)
        subject, session = d['subject'].astype(str), d['session'].astype(str)
    if actors == 'heldout':
        _, _, info = subject_split(Dataset(images, labels, [], subject=subject), 0.5, 1)   # bench_accuracy's split
        keep = np.isin(subject, info['val_subjects'])
        images, labels, subject, session = images[keep], labels[keep], subject[keep], session[keep]
    return images, labels, subject, session


def run(model_path, draws: int, seed: int, actors: str = 'heldout') -> dict:
    model = EmotionModel(model_path, num_threads=2)
    rng = np.random.default_rng(seed)
    report = {'model': str(model_path), 'model_sha256': file_sha256(model_path), 'draws_per_k': draws,
              'seed': seed, 'kdef_actors': actors, 'kdef': {}, 'kdef_same_people': {}, 'fer_val': None}
    t0 = time.perf_counter()
    images, y, subject, session = _kdef_faces(actors)
    z, e = _scores(model, images)
    report['embedding_dim'] = model.embedding_dim
    actors = np.unique(subject)
    report['kdef_actor_count'] = int(len(actors))
    for k in (1, 3, 5, 10):
        rows = []
        for _ in range(draws):
            chosen = rng.choice(actors, k, replace=False)
            cal = np.isin(subject, chosen)
            groups, how, _ = fold_groups(subject[cal], session[cal], None, int(cal.sum()))
            gain, base, after, method = _trial(z, y, cal, groups, how, e=e)
            rows.append({'actors': chosen.tolist(), 'folds_by': how, 'gain_points': gain, 'baseline': base,
                         'calibrated': after, 'method': method})
        report['kdef'][str(k)] = _summary(rows)
        print(f'kdef k={k}: mean {report["kdef"][str(k)]["mean_gain"]:+.2f}', flush=True)
    sessions = np.unique(session)
    for k in (1, 3, 5):
        rows = []
        for _ in range(draws):
            chosen, first = rng.choice(actors, k, replace=False), rng.choice(sessions)
            people = np.isin(subject, chosen)
            cal, test = people & (session == first), people & (session != first)
            groups, how, _ = fold_groups(subject[cal], None, file_order_chunks(y[cal]), int(cal.sum()))
            gain, base, after, method = _trial(z, y, cal, groups, how, test, e)
            rows.append({'actors': chosen.tolist(), 'calibration_session': str(first), 'folds_by': how,
                         'gain_points': gain, 'baseline': base, 'calibrated': after, 'method': method})
        report['kdef_same_people'][str(k)] = _summary(rows)
    if FER.exists():
        with np.load(FER) as d:
            val = d['split'] == 'val'
            (zf, ef), yf = _scores(model, d['images'][val]), d['labels'][val].astype(np.int64)
        rows = []
        for _ in range(draws):
            cal = np.zeros(len(yf), bool)
            cal[rng.choice(len(yf), 300, replace=False)] = True
            groups, how, _ = fold_groups(None, None, None, 300, int(rng.integers(1 << 30)))
            gain, base, after, method = _trial(zf, yf, cal, groups, how, e=ef)
            rows.append({'folds_by': how, 'gain_points': gain, 'baseline': base, 'calibrated': after, 'method': method})
        report['fer_val'] = _summary(rows)
    report['wall_s'] = time.perf_counter() - t0
    return report


def print_table(report):
    print(f'model {report["model"]} (sha256 {report["model_sha256"][:12]}), {report["draws_per_k"]} draws each')
    print('| calibration set | test | accuracy without | with (mean) | gain mean | min | max | chosen (draws) |')
    print('|---|---|---|---|---|---|---|---|')
    n = report.get('kdef_actor_count', 34)
    for k, s in report['kdef'].items():
        print(f'| kdef_dev, {k} actor{"s" if k != "1" else ""} ({14 * int(k)} faces) | other {n - int(k)} actors | '
              f'{100 * s["mean_baseline"]:.1f} % | {100 * s["mean_calibrated"]:.1f} % | {s["mean_gain"]:+.2f} | '
              f'{s["min_gain"]:+.2f} | {s["max_gain"]:+.2f} | '
              f'{", ".join(f"{m} {n}" for m, n in sorted(s["methods"].items()))} |')
    for k, s in report.get('kdef_same_people', {}).items():
        print(f'| the same {k} actor{"s" if k != "1" else ""}, one session ({7 * int(k)} faces) | their other session | '
              f'{100 * s["mean_baseline"]:.1f} % | {100 * s["mean_calibrated"]:.1f} % | {s["mean_gain"]:+.2f} | '
              f'{s["min_gain"]:+.2f} | {s["max_gain"]:+.2f} | '
              f'{", ".join(f"{m} {n}" for m, n in sorted(s["methods"].items()))} |')
    s = report['fer_val']
    if s:
        print(f'| FER2013 val, 300 faces | other 3,289 val faces | {100 * s["mean_baseline"]:.1f} % | '
              f'{100 * s["mean_calibrated"]:.1f} % | {s["mean_gain"]:+.2f} | {s["min_gain"]:+.2f} | '
              f'{s["max_gain"]:+.2f} | {", ".join(f"{m} {n}" for m, n in sorted(s["methods"].items()))} |')


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--model', default='', help='model path or shipped name (default: the shipped default)')
    p.add_argument('--draws', type=int, default=10)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--kdef-actors', choices=('heldout', 'all'), default='heldout',
                   help='heldout: the 17 actors the shipped models never trained on; all: the 34 (a model without kdef)')
    p.add_argument('--out', type=Path, help='default bench/results/<cpu kind>/calibration.json')
    args = p.parse_args(argv)
    if not KDEF.exists():
        print(f'skip: {KDEF} is absent (../shared datasets)', file=sys.stderr)
        return 2
    info = machine_info()
    report = run(resolve_model_path(args.model), args.draws, args.seed, args.kdef_actors)
    report['machine'] = info
    report['command'] = ' '.join(['.venv/bin/python', 'bench/bench_calibration.py'] + (argv or sys.argv[1:]))
    write_results(args.out or ROOT / 'bench' / 'results' / cpu_kind(info) / 'calibration.json', report, print_table)
    return 0


if __name__ == '__main__':
    sys.exit(main())
