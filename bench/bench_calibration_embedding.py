"""Would a calibration on the network's embedding pay where the map on its log-probabilities does not? (issue 26)

The same kdef_dev draws as bench_calibration.py (same seed: the same actors per draw), three adaptations side by side:
- `logits`: the maps on the log-probabilities alone (bias / temperature / vector / matrix, chosen and refused by
  `emotion-train calibrate`'s rule; what it shipped before prototypes joined its candidates);
- `head`: the network's last layer refitted on the 256-d embedding (multinomial logistic regression started at the
  shipped weights and pulled back to them by an L2 penalty lambda);
- `prototypes`: log p + alpha * cosine(embedding, mean embedding of each class among the calibration faces).
lambda and alpha are chosen by cross-validation over the CLI's folds (fold_groups: leave one actor out, by session
for one actor), and the draw is refused (gain 0) when the best held-out gain is not above 0, as the CLI refuses.

The embedding (the global-average-pool output) and the head's weights are read from the int8 .tflite itself, with
LiteRT's reference kernels (the XNNPACK delegate hides intermediate tensors); the log-probabilities are the served
ones (XNNPACK), so the `logits` column is bench_calibration.py's table before prototypes. The CLI now reads the
embedding as a second output at the served speed (core/emotion/embedding.py); bench_calibration.py measures that.

Usage: .venv/bin/python bench/bench_calibration_embedding.py [--model NAME|PATH] [--kdef-actors heldout|all] [--draws 10]
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

from bench_calibration import KDEF, _kdef_faces, _trial  # noqa: E402
from machine import cpu_kind, machine_info, write_results  # noqa: E402

from emotion_ros.core.emotion.calibration import cosine_to, file_sha256, log_probs, softmax  # noqa: E402
from emotion_ros.core.emotion.model import EmotionModel, quantize_input, resolve_model_path  # noqa: E402
from emotion_ros.training.calibrate import class_prototypes, fold_groups  # noqa: E402

HEAD_LAMBDAS = (0.003, 0.01, 0.03, 0.1)
PROTOTYPE_ALPHAS = (1.0, 3.0, 10.0, 30.0)


def embed(model_path, images: np.ndarray):
    """(embeddings (N, D), head weight (D, C), head bias (C,)) from the .tflite."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    it = Interpreter(model_path=str(model_path), experimental_preserve_all_tensors=True,
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    inp = it.get_input_details()[0]
    tensors = {t['index']: t for t in it.get_tensor_details()}
    pools = [t for t in tensors.values() if 'global_average_pooling' in t['name'] and len(t['shape']) == 2]
    if not pools:
        raise SystemExit(f'{model_path}: no global-average-pool tensor (not an emonet/student export?)')
    pool = pools[-1]
    head = next(o for o in it._get_ops_details() if o['op_name'] == 'FULLY_CONNECTED' and pool['index'] in o['inputs'])
    it.resize_tensor_input(inp['index'], (len(images), 48, 48, 1))
    it.allocate_tensors()
    it.set_tensor(inp['index'], quantize_input(images[..., None], inp))
    it.invoke()

    def value(t):
        v = it.get_tensor(t['index']).astype(np.float64)
        q = t['quantization_parameters']
        if not len(q['scales']):
            return v
        shape = [1] * v.ndim
        shape[q['quantized_dimension']] = -1
        return (v - q['zero_points'].reshape(shape)) * q['scales'].reshape(shape)

    weight, bias = (value(tensors[i]) for i in head['inputs'][1:3])
    return value(pool), weight.T, bias


def fit_head(e, y, w0, b0, lam, steps=300, lr=0.5):
    """Logistic regression on the embedding, from the shipped head and pulled back to it (L2, lam)."""
    w, b, onehot = w0.copy(), b0.copy(), np.eye(w0.shape[1])[y]
    for _ in range(steps):
        err = softmax(e @ w + b) - onehot
        w -= lr * (e.T @ err / len(y) + lam * (w - w0))
        b -= lr * (err.mean(0) + lam * (b - b0))
    return w, b


def prototype_scores(e, e_cal, y_cal, classes):
    return cosine_to(e, class_prototypes(e_cal, y_cal, classes))


def _predict(method, p, e, z, e_cal, y_cal, head):
    if method == 'head':
        w, b = fit_head(e_cal, y_cal, *head, p)
        return (e @ w + b).argmax(1)
    return (z + p * prototype_scores(e, e_cal, y_cal, z.shape[1])).argmax(1)


def _embedding_trial(method, grid, e, z, y, cal, folds, head):
    """Gain in points on ~cal of `method` with its parameter chosen by CV over `folds`; 0 when refused."""
    test, ec, zc, yc = ~cal, e[cal], z[cal], y[cal]
    classes = z.shape[1]

    def cv(p):
        gains = []
        for f in np.unique(folds):
            tr, te = folds != f, folds == f
            if method == 'prototypes' and len(np.unique(yc[tr])) < classes:
                return -1.0
            pred = _predict(method, p, ec[te], zc[te], ec[tr], yc[tr], head)
            gains.append((pred == yc[te]).mean() - (zc[te].argmax(1) == yc[te]).mean())
        return float(np.mean(gains))

    score, p = max((cv(p), p) for p in grid)
    if score <= 0:
        return 0.0, 'refused'
    pred = _predict(method, p, e[test], z[test], ec, yc, head)
    return 100 * float((pred == y[test]).mean() - (z[test].argmax(1) == y[test]).mean()), p


def run(model_path, draws: int, seed: int, actors: str) -> dict:
    images, y, subject, session = _kdef_faces(actors)
    e, w0, b0 = embed(model_path, images)
    z = log_probs(EmotionModel(model_path, num_threads=1).predict(images))   # as served (XNNPACK), as in bench_calibration
    people = np.unique(subject)
    rng = np.random.default_rng(seed)
    report = {'model': str(model_path), 'model_sha256': file_sha256(model_path), 'kdef_actors': actors,
              'kdef_actor_count': int(len(people)), 'draws_per_k': draws, 'seed': seed,
              'embedding_dim': int(e.shape[1]), 'baseline_accuracy': float((z.argmax(1) == y).mean()), 'kdef': {}}
    t0 = time.perf_counter()
    for k in (1, 3, 5, 10):
        rows = {'logits': [], 'head': [], 'prototypes': []}
        for _ in range(draws):
            chosen = rng.choice(people, k, replace=False)
            cal = np.isin(subject, chosen)
            groups, how, _ = fold_groups(subject[cal], session[cal], None, int(cal.sum()))
            rows['logits'].append(_trial(z, y, cal, groups, how)[0])
            rows['head'].append(_embedding_trial('head', HEAD_LAMBDAS, e, z, y, cal, groups, (w0, b0))[0])
            rows['prototypes'].append(_embedding_trial('prototypes', PROTOTYPE_ALPHAS, e, z, y, cal, groups, None)[0])
        report['kdef'][str(k)] = {m: {'mean_gain': float(np.mean(g)), 'min_gain': float(np.min(g)),
                                      'max_gain': float(np.max(g)), 'gains': [float(v) for v in g]}
                                  for m, g in rows.items()}
        print(f'k={k}: ' + '  '.join(f'{m} {np.mean(g):+.2f} (min {np.min(g):+.2f})' for m, g in rows.items()),
              flush=True)
    report['wall_s'] = time.perf_counter() - t0
    return report


def print_table(report):
    print(f'model {report["model"]} (sha256 {report["model_sha256"][:12]}), kdef_dev {report["kdef_actors"]} '
          f'({report["kdef_actor_count"]} actors, {100 * report["baseline_accuracy"]:.1f} % uncalibrated), '
          f'{report["draws_per_k"]} draws each; gain in points, mean (worst draw)')
    print('| calibration actors | logits (shipped) | head on the embedding | prototypes on the embedding |')
    print('|---|---|---|---|')
    for k, s in report['kdef'].items():
        print(f'| {k} | ' + ' | '.join(f'{s[m]["mean_gain"]:+.2f} ({s[m]["min_gain"]:+.2f})'
                                       for m in ('logits', 'head', 'prototypes')) + ' |')


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--model', default='', help='model path or shipped name (default: the shipped default)')
    p.add_argument('--draws', type=int, default=10)
    p.add_argument('--seed', type=int, default=0, help="bench_calibration.py's seed gives its kdef draws")
    p.add_argument('--kdef-actors', choices=('heldout', 'all'), default='heldout')
    p.add_argument('--out', type=Path, help='default bench/results/<cpu kind>/calibration_embedding[_<model>].json')
    args = p.parse_args(argv)
    if not KDEF.exists():
        print(f'skip: {KDEF} is absent (../shared datasets)', file=sys.stderr)
        return 2
    path = resolve_model_path(args.model)
    info = machine_info()
    report = run(path, args.draws, args.seed, args.kdef_actors)
    report['machine'] = info
    report['command'] = ' '.join(['.venv/bin/python', 'bench/bench_calibration_embedding.py'] + (argv or sys.argv[1:]))
    suffix = '' if not args.model else f'_{path.stem}'
    write_results(args.out or ROOT / 'bench' / 'results' / cpu_kind(info) / f'calibration_embedding{suffix}.json',
                  report, print_table)
    return 0


if __name__ == '__main__':
    sys.exit(main())
