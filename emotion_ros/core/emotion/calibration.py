"""A calibration file: a small affine map on one model's log-probabilities, fitted to a robot's camera and
people by `emotion-train calibrate` (docs/calibration.md). Load, check against the running model, apply.

calibrated = softmax(W · log(p) + b), with W = I (bias), t·I (temperature + bias), diag (vector) or a
full C x C matrix; `prototypes` adds alpha · cos(embedding, P_c), P_c the unit mean embedding of class c
among the calibration faces (the network's embedding: core/emotion/embedding.py). The file names the model
it was fitted for by sha256; any other model is refused, because a map fitted to one network's scores means
nothing for another's.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emotion_ros.core.emotion.labels import canonical_label

FORMAT = 'emotion_ros.calibration/1'
METHODS = ('identity', 'bias', 'temperature_bias', 'vector', 'matrix', 'prototypes')
MAX_ALPHA = 1000.0
MAX_EMBEDDING_DIM = 4096
LOG_FLOOR = 1e-6   # int8 models give exact zeros; log(0) would be -inf
MAX_FILE_BYTES = 1 << 20


class CalibrationError(ValueError):
    """The calibration file cannot be used; the message is one line saying why."""


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return h.hexdigest()


def log_probs(probs: np.ndarray) -> np.ndarray:
    return np.log(np.clip(np.asarray(probs, np.float64), LOG_FLOOR, 1.0))


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class Calibration:
    method: str
    weight: np.ndarray          # (C, C)
    bias: np.ndarray            # (C,)
    classes: tuple
    model_sha256: tuple         # every export (int8/float32) of the model it was fitted for
    path: str = ''
    sha256: str = ''            # of the file itself
    alpha: float = 0.0
    prototypes: np.ndarray | None = None   # (C, D) unit vectors, method `prototypes` only

    @property
    def needs_embedding(self) -> bool:
        return self.prototypes is not None

    @property
    def describe(self) -> str:
        """`path (method, sha 1a2b3c4d)` for logs and diagnostics."""
        return f'{self.path} ({self.method}, sha {self.sha256[:8]})'

    def apply(self, probs: np.ndarray, embedding: np.ndarray | None = None) -> np.ndarray:
        """(N, C) probabilities (and (N, D) embeddings where `needs_embedding`) -> calibrated (N, C) float32;
        an all-NaN (unscored) row stays all-NaN."""
        probs = np.asarray(probs)
        if len(probs) == 0:
            return probs.astype(np.float32)
        bad = ~np.all(np.isfinite(probs), axis=1)
        z = log_probs(np.where(bad[:, None], 1.0, probs)) @ self.weight.T + self.bias
        if self.prototypes is not None:
            if embedding is None or np.shape(embedding) != (len(probs), self.prototypes.shape[1]):
                raise ValueError(f'{self.path}: needs the model\'s {self.prototypes.shape[1]}-d embedding of each face')
            e = np.asarray(embedding, np.float64)
            bad |= ~np.all(np.isfinite(e), axis=1)
            z = z + self.alpha * cosine_to(np.where(bad[:, None], 0.0, e), self.prototypes)
        out = softmax(z).astype(np.float32)
        out[bad] = np.nan
        return out

    def check_model(self, model_path, labels, embedding_dim: int | None = None) -> None:
        """CalibrationError unless this file was fitted for exactly this model file and label order (and, for
        prototypes, the loaded model gives an embedding of their size: `embedding_dim`, None = not checked)."""
        sha = file_sha256(model_path)
        if sha not in self.model_sha256:
            raise CalibrationError(f'{self.path} was fitted for another model (sha256 {self.model_sha256[0][:12]}), '
                                   f'not {Path(model_path).name} (sha256 {sha[:12]}); run emotion-train calibrate '
                                   'again for this model')
        labels = tuple(canonical_label(x) for x in labels)
        if labels != self.classes:
            raise CalibrationError(f'{self.path}: classes {list(self.classes)} differ from the model\'s {list(labels)}')
        if self.prototypes is not None and embedding_dim is not None and embedding_dim != self.prototypes.shape[1]:
            raise CalibrationError(f'{self.path}: its prototypes need the model\'s {self.prototypes.shape[1]}-d '
                                   f'embedding; the loaded {Path(model_path).name} gives '
                                   f'{embedding_dim or "none"}')


def cosine_to(embedding: np.ndarray, unit_prototypes: np.ndarray) -> np.ndarray:
    """(N, C) cosine of each embedding to each (unit) prototype; a zero embedding scores 0."""
    e = np.asarray(embedding, np.float64)
    return (e / (np.linalg.norm(e, axis=1, keepdims=True) + 1e-9)) @ unit_prototypes.T


def _matrix(value, shape, what, path):
    try:
        arr = np.asarray(value, np.float64)
    except (TypeError, ValueError) as exc:
        raise CalibrationError(f'{path}: {what} is not numeric ({exc})') from exc
    if arr.shape != shape:
        raise CalibrationError(f'{path}: {what} has shape {arr.shape}, expected {shape}')
    if not np.all(np.isfinite(arr)):
        raise CalibrationError(f'{path}: {what} holds non-finite values')
    return arr


def parse_calibration(doc: dict, path: str = '<memory>', sha256: str = '') -> Calibration:
    if not isinstance(doc, dict) or doc.get('format') != FORMAT:
        raise CalibrationError(f'{path}: not a calibration file (format {FORMAT!r} expected)')
    method = doc.get('method')
    if method not in METHODS:
        raise CalibrationError(f'{path}: unknown method {method!r} (known: {", ".join(METHODS)})')
    classes = doc.get('classes')
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise CalibrationError(f'{path}: classes must be a list of names')
    c = len(classes)
    params, model = doc.get('parameters'), doc.get('model')
    if not isinstance(params, dict) or not isinstance(model, dict):
        raise CalibrationError(f'{path}: `parameters` and `model` must be objects')
    weight = _matrix(params.get('weight'), (c, c), 'parameters.weight', path)
    bias = _matrix(params.get('bias'), (c,), 'parameters.bias', path)
    shas = model.get('sha256_any_of') or [model.get('sha256')]
    if not isinstance(shas, list) or not all(isinstance(s, str) and len(s) == 64 for s in shas):
        raise CalibrationError(f'{path}: model.sha256 is missing or malformed')
    alpha, prototypes = 0.0, None
    if method == 'prototypes':
        alpha = params.get('alpha')
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= MAX_ALPHA:
            raise CalibrationError(f'{path}: parameters.alpha must be a number in [0, {MAX_ALPHA:g}]')
        rows = params.get('prototypes')
        dim = len(rows[0]) if isinstance(rows, list) and rows and isinstance(rows[0], list) else 0
        if not 1 <= dim <= MAX_EMBEDDING_DIM:
            raise CalibrationError(f'{path}: parameters.prototypes must be {c} rows of 1..{MAX_EMBEDDING_DIM} numbers')
        prototypes = _matrix(rows, (c, dim), 'parameters.prototypes', path)
        norms = np.linalg.norm(prototypes, axis=1)
        if not np.all(norms > 1e-6):
            raise CalibrationError(f'{path}: parameters.prototypes holds a zero row')
        prototypes = prototypes / norms[:, None]
    return Calibration(method, weight, bias, tuple(canonical_label(x) for x in classes), tuple(shas), str(path),
                       sha256, float(alpha), prototypes)


def load_calibration(path, model_path=None, labels=None, embedding_dim: int | None = None) -> Calibration:
    """Read and check a calibration file; with `model_path` also that it belongs to that model (and its
    embedding, Calibration.check_model)."""
    path = Path(path).expanduser()
    try:
        if not path.is_file():
            raise CalibrationError(f'calibration file {path} does not exist')
        if path.stat().st_size > MAX_FILE_BYTES:
            raise CalibrationError(f'calibration file {path} is larger than {MAX_FILE_BYTES} bytes')
        data = path.read_bytes()
        doc = json.loads(data.decode('utf-8'))
    except (OSError, ValueError, RecursionError) as exc:   # ValueError: bad UTF-8, JSON, or a huge integer
        raise CalibrationError(f'calibration file {path}: {exc.__class__.__name__}: {exc}') from exc
    cal = parse_calibration(doc, str(path), hashlib.sha256(data).hexdigest())
    if model_path is not None:
        cal.check_model(model_path, labels if labels is not None else cal.classes, embedding_dim)
    return cal
