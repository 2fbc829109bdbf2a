"""`emotion-train evaluate`: score a model (.tflite or .keras; default the shipped one) on any npz
in the shared format, with class names matched through their synonyms."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from emotion_ros.core.emotion.calibration import CalibrationError, load_calibration
from emotion_ros.core.emotion.labels import canonical_label

from .metrics import summarize
from .sources import align_classes


def load_predictor(model_path, calibration=None):
    """(labels, predict(uint8 N x 48 x 48) -> probs) for a .tflite (LiteRT) or .keras model; a `calibration`
    (checked against the model file) maps the scores as the classifier node does."""
    model_path = Path(model_path)
    if model_path.suffix == '.keras':
        import keras

        from .export import keras_labels
        model = keras.models.load_model(model_path)
        labels = keras_labels(model_path)
        if calibration is not None:
            calibration.check_model(model_path, labels)   # refuses: a file is fitted to one exported model
        return labels, lambda x: model.predict(x[..., None].astype(np.float32), batch_size=256, verbose=0)
    from emotion_ros.core.emotion.model import EmotionModel
    from emotion_ros.core.emotion.pipeline import EmotionPipeline
    model = EmotionModel(model_path, num_threads=2)
    if calibration is not None:
        calibration.check_model(model.path, model.labels, model.embedding_dim)
    return list(model.labels), EmotionPipeline(model, calibration=calibration).predict_crops   # the node's own path


def evaluate(data_path, model_path=None, split: str | None = None, limit: int = 0,
             holdout: float = 0.05, holdout_seed: int = 1, calibration_path=None) -> dict:
    """Metrics dict; with `calibration_path` the scores are calibrated (CalibrationError if the file does not
    belong to the model) and `calibration` names the file, else `calibration` is None."""
    from emotion_ros.core.emotion.model import default_model_path

    from .data import honest_splits, load_npz
    model_path = Path(model_path) if model_path else default_model_path()
    ds = load_npz(data_path)
    if split == 'holdout' and ds.split is not None and not (ds.split == 'holdout').any():
        ds = honest_splits(ds, holdout, holdout_seed)[1]
    elif split:
        if ds.split is None:
            raise ValueError(f'{data_path} has no split array; drop --split')
        ds = ds.subset(ds.split == split)
    if limit:
        ds = ds.subset(np.arange(min(limit, len(ds))))
    calibration = load_calibration(calibration_path) if calibration_path else None
    labels, predict = load_predictor(model_path, calibration)
    model_labels = [canonical_label(n) for n in labels]
    ds, skipped = align_classes(ds, model_labels)
    notes = [f'skipped {n} images of class {c!r}: the model has no such class' for c, n in skipped.items()]
    images, mapped = ds.images, ds.labels
    if images.shape[1:] != (48, 48):
        raise ValueError(f'{data_path}: images are {images.shape[1:]}, expected 48x48 crops '
                         '(run `emotion-train import` first)')
    probs = predict(images) if len(images) else np.zeros((0, len(model_labels)), np.float32)
    result = summarize(mapped, np.asarray(probs).argmax(1) if len(images) else [], model_labels)
    result.update({'model': str(model_path), 'data': str(data_path), 'split': split,
                   'calibration': None if calibration is None else {
                       'path': calibration.path, 'sha256': calibration.sha256, 'method': calibration.method},
                   'skipped_classes': skipped, 'notes': notes})
    return result


def run_evaluate(args) -> int:
    try:
        result = evaluate(args.data, args.model, args.split, args.limit, args.holdout, args.holdout_seed,
                          args.calibration)
    except CalibrationError as exc:   # its message is the whole story (which file, which model)
        print(f'emotion-train evaluate: {exc}', file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - one clear line instead of a traceback for bad inputs
        print(f'emotion-train evaluate: {exc.__class__.__name__}: {exc}', file=sys.stderr)
        return 2
    for note in result['notes']:
        print(f'note: {note}', file=sys.stderr)
    if args.json:
        print(json.dumps(result))
        return 0
    cal = result['calibration']
    print(f"{result['model']} on {result['data']}: n={result['n']} accuracy={result['accuracy']:.4f} "
          f"macro_f1={result['macro_f1']:.4f} calibration="
          + (f"{cal['path']} ({cal['method']}, sha {cal['sha256'][:8]})" if cal else 'none'))
    for c, r in result['per_class'].items():
        print(f"  {c:10s} recall {'-' if r is None else f'{r:.3f}'} (n={result['support'][c]})")
    return 0


def add_arguments(p):
    p.add_argument('--data', required=True, help='npz in the shared format')
    p.add_argument('--model', help='.tflite (labels file beside it) or .keras; default: the shipped model')
    p.add_argument('--split', help='only rows whose split equals this (e.g. val); `holdout` = the slice of train '
                                   'that `emotion-train fit --holdout F --split-seed S` kept out of training')
    p.add_argument('--holdout', type=float, default=0.05, help='with --split holdout: the fit\'s --holdout')
    p.add_argument('--holdout-seed', type=int, default=1, help='with --split holdout: the fit\'s split seed')
    p.add_argument('--limit', type=int, default=0, help='only the first N rows (after --split)')
    p.add_argument('--json', action='store_true', help='print one JSON object')
    p.add_argument('--calibration', metavar='FILE', help='score with this calibration file applied (from '
                                                         '`emotion-train calibrate`; it must belong to --model)')
