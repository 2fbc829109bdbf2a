"""`emotion-train calibrate`: fit a small, regularised map on the current model's log-probabilities to a
robot's own labelled faces, chosen by cross-validation inside those faces by person (docs/calibration.md).

Candidates: per-class bias; temperature + bias; per-class scale (vector) + bias; a full C x C matrix + bias;
each with an L2 pull towards "no change" of strength lambda from a small grid; and, where the folds are by
person and the model exposes its embedding, class prototypes (log p + alpha * cos(embedding, class mean)).
The candidate with the best held-out accuracy over leave-groups-out folds wins (ties: the lower held-out NLL,
then the simpler map).
Nothing is written when that accuracy is not above the uncalibrated model's on the same folds, or when
a class has fewer than MIN_PER_CLASS faces. Needs only numpy, scipy and LiteRT.
"""
from __future__ import annotations

import json
import os
import shlex
import sys
import tempfile
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

from emotion_ros.core.emotion.calibration import (FORMAT, cosine_to, file_sha256, log_probs, parse_calibration,
                                                  softmax)
from emotion_ros.core.emotion.labels import canonical_label

MIN_PER_CLASS = 2          # faces of every model class; below this a per-class bias is a guess
MIN_GROUPS = 2             # folds need at least two people (or sessions, bursts, images)
IMAGE_FOLDS = 5            # folds by image when nothing better names the groups
METHODS = ('bias', 'temperature_bias', 'vector', 'matrix')
# Folds by session, chunk or image hold near-copies of the training faces, so their held-out gain flatters the
# richer maps: there only the two simplest compete. And the pull towards "no change" is never weaker than 0.1.
# Measured (bench/bench_calibration.py protocol, 10 draws, emotion_fast on all 34 kdef_dev actors): with lambdas
# down to 0.003 and every map for every fold kind, 1 actor: mean -1.9, worst draw -8.7 points; 5 actors: +0.7,
# worst -4.9; this policy: 1 actor +1.0 / worst 0.0, 5 actors +1.3 / worst 0.0, FER2013 val +0.2.
FEW_GROUP_METHODS = ('bias', 'temperature_bias')
LAMBDAS = (0.1, 0.3)
# A map competes only with at least this many faces per parameter: a full matrix (56 numbers) chosen from 21
# faces of 3 people cost one draw 14 points on their other session.
FACES_PER_PARAMETER = 2
# Prototypes on the network's embedding, only with folds by person (near-copies flatter them as they flatter the
# matrix). The alpha grid was chosen among four on other draws (bench_calibration's protocol, seed 1, emotion_fast
# on all 34 kdef_dev actors, for which the studio is new): 5 actors +4.43 points (worst +2.46) with (2..20), +4.31
# with (1..30). On the bench's own draws (seed 0) see docs/calibration.md.
PROTOTYPE_ALPHAS = (2.0, 5.0, 10.0, 20.0)


class CalibrationRefused(Exception):
    """No file is written; the message says why."""


def _unpack(theta, method, c):
    if method == 'bias':
        return np.eye(c), theta
    if method == 'temperature_bias':
        return np.eye(c) * np.exp(theta[0]), theta[1:]
    if method == 'vector':
        return np.diag(np.exp(theta[:c])), theta[c:]
    return np.eye(c) + theta[:c * c].reshape(c, c), theta[c * c:]


def _size(method, c):
    return {'bias': c, 'temperature_bias': c + 1, 'vector': 2 * c, 'matrix': c * c + c}[method]


def fit_map(z: np.ndarray, y: np.ndarray, method: str, lam: float, n_classes: int | None = None):
    """(weight C x C, bias C) minimising class-balanced NLL of softmax(W z + b) + lam * |theta|^2,
    theta = the deviation from the identity map (log-temperature, log-scales, W - I, b)."""
    c = n_classes or z.shape[1]
    y = np.asarray(y, np.int64)
    counts = np.bincount(y, minlength=c).astype(np.float64)
    w = (1.0 / np.maximum(counts, 1))[y]
    w /= w.sum()
    onehot = np.eye(c)[y]

    def objective(theta):
        weight, bias = _unpack(theta, method, c)
        q = softmax(z @ weight.T + bias)
        nll = -np.sum(w * np.log(q[np.arange(len(y)), y] + 1e-12))
        g = (q - onehot) * w[:, None]
        gb, gw = g.sum(0), g.T @ z
        if method == 'bias':
            grad = gb
        elif method == 'temperature_bias':
            grad = np.r_[np.sum(gw * weight), gb]
        elif method == 'vector':
            grad = np.r_[np.diag(gw) * np.exp(theta[:c]), gb]
        else:
            grad = np.r_[gw.ravel(), gb]
        return nll + lam * theta @ theta, grad + 2 * lam * theta

    theta = minimize(objective, np.zeros(_size(method, c)), jac=True, method='L-BFGS-B').x
    return _unpack(theta, method, c)


def _folds(groups: np.ndarray):
    for g in np.unique(groups):
        yield groups != g, groups == g


def cross_validate(z, y, groups, methods=METHODS, lambdas=LAMBDAS):
    """Leave-one-group-out accuracy and NLL of each candidate and of the model as it is."""
    c = z.shape[1]
    n = len(y)
    base_pred = z.argmax(1)
    results = [{'method': 'identity', 'lambda': 0.0, 'accuracy': float((base_pred == y).mean()),
                'nll': float(-np.mean(z[np.arange(n), y]))}]   # z = log p: NLL of the model as it is
    for method in methods:
        for lam in lambdas:
            correct, nll = 0, 0.0
            for train, test in _folds(groups):
                weight, bias = fit_map(z[train], y[train], method, lam, c)
                q = softmax(z[test] @ weight.T + bias)
                correct += int((q.argmax(1) == y[test]).sum())
                nll -= float(np.log(q[np.arange(test.sum()), y[test]] + 1e-12).sum())
            results.append({'method': method, 'lambda': lam, 'accuracy': correct / n, 'nll': nll / n})
    return results


def class_prototypes(e: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    """(C, D) unit mean embedding of each class (every class must have a face)."""
    protos = np.stack([np.asarray(e, np.float64)[y == c].mean(0) for c in range(n_classes)])
    return protos / (np.linalg.norm(protos, axis=1, keepdims=True) + 1e-9)


def cross_validate_prototypes(z, e, y, groups, alphas=PROTOTYPE_ALPHAS):
    """Leave-one-group-out accuracy and NLL of log p + alpha * cos(e, prototypes) for each alpha; [] when a
    fold's training part lacks a class (no prototype for it)."""
    c, n = z.shape[1], len(y)
    folds = list(_folds(groups))
    if any(len(np.unique(y[train])) < c for train, _ in folds):
        return []
    results = []
    for alpha in alphas:
        correct, nll = 0, 0.0
        for train, test in folds:
            q = softmax(z[test] + alpha * cosine_to(e[test], class_prototypes(e[train], y[train], c)))
            correct += int((q.argmax(1) == y[test]).sum())
            nll -= float(np.log(q[np.arange(test.sum()), y[test]] + 1e-12).sum())
        results.append({'method': 'prototypes', 'lambda': 0.0, 'alpha': alpha, 'accuracy': correct / n,
                        'nll': nll / n})
    return results


def choose(results):
    """Best held-out accuracy; ties to the lower NLL, then the simpler method (METHODS order), the smaller alpha."""
    order = {m: i for i, m in enumerate(('identity',) + METHODS + ('prototypes',))}
    return min(results, key=lambda r: (-round(r['accuracy'], 9), round(r['nll'], 6), order[r['method']],
                                       r.get('alpha', 0.0), -r['lambda']))


def file_order_chunks(labels, k: int = IMAGE_FOLDS) -> np.ndarray:
    """Fold ids for a folder of captures: each class's faces, in file order, cut into k contiguous chunks.

    The dataset recorder saves one burst per `capture` call, one label each; folds by burst would hold out
    a whole class (a map fitted without it cannot be judged on it). Chunks keep a burst's near-identical
    consecutive frames together (apart from the cuts) and put every class in (nearly) every fold."""
    labels = np.asarray(labels)
    chunks = np.zeros(len(labels), np.int64)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        chunks[idx] = np.arange(len(idx)) * k // len(idx)
    return chunks


def fold_groups(subject=None, session=None, chunks=None, n=0, seed=0):
    """(groups array, how, note): by subject where the data names two or more, else by session, by file-order
    chunk (file_order_chunks), or (last) by image in IMAGE_FOLDS random folds -- the optimistic cases, said in
    the note."""
    for values, how in ((subject, 'subject'), (session, 'session'), (chunks, 'file order within each class')):
        if values is not None and len(np.unique(values)) >= MIN_GROUPS:
            note = '' if how == 'subject' else (f'folds by {how}: the data names fewer than {MIN_GROUPS} subjects, '
                                                'so the cross-validated gain is optimistic for new people')
            return np.asarray(values).astype(str), how, note
    groups = np.random.default_rng(seed).permutation(n) % IMAGE_FOLDS
    return groups.astype(str), 'image', ('folds by image: the data names no subjects, sessions or bursts, so '
                                         'near-copies of one face can sit on both sides (optimistic gain)')


def calibrate_logits(z, y, classes, groups, methods=None, lambdas=LAMBDAS, min_per_class=MIN_PER_CLASS,
                     folds_by='subject', embedding=None):
    """Cross-validate, choose, refit on everything. Returns a dict (method, lambda, weight, bias, cv, gain;
    alpha and prototypes for `prototypes`); raises CalibrationRefused when a class is short of faces or the
    held-out gain is not positive. `methods` None = every map when the folds are by subject (`folds_by`), else
    FEW_GROUP_METHODS; prototypes compete when `embedding` (N, D) is given and the folds are by subject."""
    c = len(classes)
    with_prototypes = embedding is not None and folds_by == 'subject' and methods is None
    if methods is None:
        methods = METHODS if folds_by == 'subject' else FEW_GROUP_METHODS
        methods = tuple(m for m in methods if len(y) >= FACES_PER_PARAMETER * _size(m, c)) or ('bias',)
    counts = np.bincount(y, minlength=c)
    short = [f'{classes[i]} {int(counts[i])}' for i in range(c) if counts[i] < min_per_class]
    if short:
        raise CalibrationRefused(f'too few faces per class (need >= {min_per_class} of every class): {", ".join(short)}')
    if len(np.unique(groups)) < MIN_GROUPS:
        raise CalibrationRefused(f'need at least {MIN_GROUPS} folds (people, sessions or images)')
    cv = cross_validate(z, y, groups, methods, lambdas)
    if with_prototypes:
        cv += cross_validate_prototypes(z, embedding, y, groups)
        methods = tuple(methods) + ('prototypes',)
    best, base = choose(cv), cv[0]
    gain = best['accuracy'] - base['accuracy']
    out = {'cv': cv, 'baseline_accuracy': base['accuracy'], 'accuracy': best['accuracy'], 'gain': gain,
           'method': best['method'], 'lambda': best['lambda'], 'candidates': list(methods)}
    if best['method'] == 'identity' or gain <= 0:
        raise CalibrationRefused(f'no candidate beats the model on held-out folds (uncalibrated '
                                 f'{base["accuracy"]:.1%}, best {best["method"]} {best["accuracy"]:.1%}): '
                                 'the file would make these faces worse or no better')
    if best['method'] == 'prototypes':
        out['weight'], out['bias'] = np.eye(c), np.zeros(c)
        out['alpha'], out['prototypes'] = best['alpha'], class_prototypes(embedding, y, c)
    else:
        out['weight'], out['bias'] = fit_map(z, y, best['method'], best['lambda'], c)
    return out


def load_calibration_data(path):
    """(images, labels, classes, subject|None, session|None, chunks|None, notes) from an npz or a folder (a
    FaceLabeler or dataset recorder folder: no subjects, so folds by file_order_chunks)."""
    path = Path(path).expanduser()
    notes = []
    if path.is_file() and path.suffix == '.npz':
        with np.load(path, allow_pickle=False) as d:
            missing = {'images', 'labels', 'classes'} - set(d.files)
            if missing:
                raise ValueError(f'{path}: missing arrays {sorted(missing)}')
            images, labels = d['images'], d['labels'].astype(np.int64)
            classes = [canonical_label(x) for x in d['classes'].tolist()]
            subject = d['subject'].astype(str) if 'subject' in d.files else None
            session = d['session'].astype(str) if 'session' in d.files else None
        return images, labels, classes, subject, session, None, notes
    if not path.is_dir():
        raise FileNotFoundError(f'{path}: not a folder or an .npz file')
    from .importer import import_dataset
    arrays, report = import_dataset(path, progress=False)
    skipped = (len(report.unreadable) + len(report.unknown_labels) + len(report.rows_without_files)
               + len(report.outside_links))
    if skipped:
        notes.append(f'{skipped} rows or files of {path} were skipped (see emotion-train import for the list)')
    labels = arrays['labels'].astype(np.int64)
    chunks = file_order_chunks(labels) if len(labels) else None
    return arrays['images'], labels, [str(c) for c in arrays['classes']], None, None, chunks, notes


def model_shas(model_path) -> list:
    from emotion_ros.core.emotion.model import precision_variants
    shas = [file_sha256(model_path)]
    for p in precision_variants(model_path).values():
        s = file_sha256(p)
        if s not in shas:
            shas.append(s)
    return shas


def write_json_atomic(path, doc) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent)
    try:
        with os.fdopen(fd, 'w') as f:
            json.dump(doc, f, indent=1)
            f.write('\n')
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _person_and_path(value: str):
    """`NAME=PATH` -> (NAME, PATH); a bare PATH -> (None, PATH)."""
    name, sep, path = value.partition('=')
    if sep and name and '/' not in name and not Path(value).exists():
        return name, path
    return None, value


def load_people(values, model_labels):
    """(images, y (model label indices), subject, session, chunks, notes) from one or more --data values.
    Several values are several people: each value's faces get its NAME (or its folder name) as `subject`, so the
    folds are by person, as for an npz that names them."""
    parts, notes = [], []
    for value in values:
        name, path = _person_and_path(value)
        images, labels, classes, subject, session, chunks, part_notes = load_calibration_data(path)
        notes += part_notes
        if images.shape[1:] != (48, 48) or images.dtype != np.uint8:
            raise ValueError(f'{path}: images are {images.dtype} {images.shape[1:]}, expected uint8 48x48 crops')
        to_model = np.array([model_labels.index(c) if c in model_labels else -1 for c in classes], np.int64)
        mapped = to_model[labels] if len(labels) else labels
        keep = mapped >= 0
        if (~keep).any():
            notes.append(f'{int((~keep).sum())} faces of {path} of classes the model does not have were left out')
        if len(values) > 1:
            subject = np.full(len(labels), name or Path(path).expanduser().resolve().name)
            session = None
        pick = (lambda a: None if a is None else np.asarray(a)[keep])
        parts.append((images[keep], mapped[keep], pick(subject), pick(session), pick(chunks)))
    if len(parts) == 1:
        return (*parts[0], notes)
    names = [p[2][0] for p in parts if len(p[2])]
    if len(set(names)) != len(names):
        raise ValueError(f'two --data values name the same person ({", ".join(sorted(names))}): use NAME=PATH')
    cat = [np.concatenate([p[i] for p in parts]) for i in range(3)]
    return cat[0], cat[1], cat[2], None, None, notes


def run_calibrate(args) -> int:
    from emotion_ros.core.emotion.model import EmotionModel, resolve_model_path
    try:
        model_path = resolve_model_path(args.model or '')
        model = EmotionModel(model_path, num_threads=2)
        model_labels = [canonical_label(x) for x in model.labels]
        images, y, subject, session, chunks, notes = load_people(args.data, model_labels)
        groups, how, note = fold_groups(subject, session, chunks, len(y), args.seed)
        if note:
            notes.append(note)
        for n in notes:
            print(f'note: {n}', file=sys.stderr)
        embedding = None
        if not len(y):
            z = np.zeros((0, len(model_labels)))
        elif model.embedding_dim:
            probs, embedding = model.predict_with_embedding(images)
            z = log_probs(probs)
        else:
            z = log_probs(model.predict(images))
            print(f'note: no prototypes: {model.embedding_note}', file=sys.stderr)
        result = calibrate_logits(z, y, model_labels, groups, folds_by=how, embedding=embedding)
    except CalibrationRefused as exc:
        print(f'emotion-train calibrate: refused, nothing written: {exc}', file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - one clear line instead of a traceback for bad inputs
        print(f'emotion-train calibrate: {exc.__class__.__name__}: {exc}', file=sys.stderr)
        return 2
    counts = {c: int((y == i).sum()) for i, c in enumerate(model_labels)}
    doc = {
        'format': FORMAT,
        'model': {'name': Path(model_path).stem, 'path': str(model_path), 'sha256': file_sha256(model_path),
                  'sha256_any_of': model_shas(model_path)},
        'classes': model_labels,
        'method': result['method'],
        'lambda': result['lambda'],
        'parameters': {'weight': result['weight'].tolist(), 'bias': result['bias'].tolist(),
                       **({'alpha': result['alpha'], 'prototypes': np.round(result['prototypes'], 7).tolist()}
                          if result['method'] == 'prototypes' else {})},
        'data': {'path': str(args.data[0]) if len(args.data) == 1 else [str(d) for d in args.data],
                 'n': int(len(y)), 'per_class': counts,
                 'groups': int(len(np.unique(groups))), 'folds_by': how},
        'cv': {'folds_by': how, 'baseline_accuracy': result['baseline_accuracy'], 'accuracy': result['accuracy'],
               'gain': result['gain'], 'candidates': result['cv']},
        'notes': notes,
        'command': ' '.join(shlex.quote(a) for a in ['emotion-train'] + sys.argv[1:]) if args.command_line is None
        else args.command_line,
    }
    parse_calibration(doc, str(args.out))   # never write what load would refuse
    write_json_atomic(args.out, doc)
    print(f'{len(y)} faces, {len(np.unique(groups))} folds by {how}: held-out accuracy '
          f'{result["baseline_accuracy"]:.1%} -> {result["accuracy"]:.1%} '
          f'(gain {100 * result["gain"]:+.1f} points) with {result["method"]} '
          f'({"alpha " + str(result["alpha"]) if "alpha" in result else "lambda " + str(result["lambda"])}); '
          f'wrote {args.out}')
    return 0


def add_arguments(p):
    p.add_argument('--data', required=True, action='append',
                   help='labelled 48x48 faces: an npz in the shared format (optional `subject`, `session`), or a '
                        'FaceLabeler / dataset recorder folder. Repeat it for several people, one folder each '
                        '(`--data alice=~/faces/alice --data bob=~/faces/bob`): the folds are then by person and '
                        'class prototypes on the embedding compete too')
    p.add_argument('--out', required=True, help='calibration file to write (JSON, atomically)')
    p.add_argument('--model', help='model path or shipped name (default: the shipped default); the file is '
                                   'valid only for this model')
    p.add_argument('--seed', type=int, default=0, help='seed of the folds by image (only when nothing names groups)')
    p.set_defaults(command_line=None)
