"""`emotion-train soup`: one network whose weights are the average of several runs fine-tuned from the same start.

Runs that start from the same weights (e.g. `--init-from emotion_fast`) and differ in seed or augmentation end
in one basin, so their averaged weights ("model soup", Wortsman et al. 2022) usually score at least as well as
the best of them, at the cost of one network (an ensemble costs one network per member). The BatchNormalization
statistics of the average are re-estimated on training images (`--data`), since averaged moments do not
describe the averaged network's activations.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np


def average_weights(models) -> list:
    weights = [m.get_weights() for m in models]
    shapes = [[w.shape for w in ws] for ws in weights]
    if any(s != shapes[0] for s in shapes):
        raise SystemExit('soup: the models have different architectures (weight shapes differ)')
    return [np.mean([ws[i] for ws in weights], axis=0) for i in range(len(weights[0]))]


def recalibrate_batchnorm(model, images: np.ndarray, batch_size: int = 256) -> None:
    """Moving mean/variance of every BatchNormalization = the exact moments of its input over `images`
    (layer by layer in graph order, each with the already re-estimated layers before it)."""
    import keras
    from keras import layers
    x = images[..., None].astype(np.float32)
    for bn in [layer for layer in model.layers if isinstance(layer, layers.BatchNormalization)]:
        probe = keras.Model(model.inputs, bn.input)
        acts = probe.predict(x, batch_size=batch_size, verbose=0)
        flat = acts.reshape(-1, acts.shape[-1]).astype(np.float64)
        bn.moving_mean.assign(flat.mean(0).astype(np.float32))
        bn.moving_variance.assign(flat.var(0).astype(np.float32))


def run_soup(args) -> int:
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
    import keras

    from .data import honest_splits, load_npz
    from .export import keras_labels
    models = [keras.models.load_model(p) for p in args.model]
    labels = [keras_labels(Path(p)) for p in args.model]
    if any(lab != labels[0] for lab in labels):
        raise SystemExit(f'soup: the models have different labels: {labels}')
    soup = models[0]
    soup.set_weights(average_weights(models))
    if args.data:
        ds = load_npz(args.data)
        train = honest_splits(ds, args.holdout, args.split_seed)[0] if ds.split is not None else ds
        idx = np.random.default_rng(0).choice(len(train), size=min(args.calib, len(train)), replace=False)
        recalibrate_batchnorm(soup, train.images[np.sort(idx)])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.stem + '.tmp.keras')
    soup.save(tmp)
    os.replace(tmp, out)
    out.with_name(out.stem + '.labels.txt').write_text('\n'.join(labels[0]) + '\n')
    print(json.dumps({'out': str(out), 'members': list(args.model), 'bn_recalibrated_on': args.calib if args.data else 0}))
    return 0


def add_arguments(p):
    p.add_argument('--model', action='append', required=True, help='.keras of the same architecture (repeat)')
    p.add_argument('--out', required=True, help='the averaged .keras (labels file written beside it)')
    p.add_argument('--data', help='npz whose train rows re-estimate the BatchNormalization statistics')
    p.add_argument('--calib', type=int, default=4096, help='how many training images for those statistics')
    p.add_argument('--holdout', type=float, default=0.05, help="the fit's --holdout (its slice is left out)")
    p.add_argument('--split-seed', type=int, default=1, help="the fit's --split-seed")
