"""Emotion classifier inference with LiteRT only (no TensorFlow import: nodes start fast and run on
machines that have just the LiteRT wheel).

A model is a `.tflite` file taking (N, 48, 48, 1) (or (N, 48, 48)) pixels 0..255 — float32, or
int8/uint8 with quantisation parameters — and returning N x C probabilities, plus a labels file with
one class name per line: `<model stem>.labels.txt` beside the model, else `labels.txt` in its folder.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from emotion_ros.core.emotion.embedding import EmbeddingUnavailable, with_embedding_output
from emotion_ros.core.emotion.labels import canonical_label

INPUT_SIZE = 48
DEFAULT_MODEL_NAME = 'emotion.tflite'


class ModelLoadError(RuntimeError):
    """The model or its labels cannot be used; the message is one line saying why."""


def default_model_path() -> Path:
    """The model shipped inside the package (emotion_ros/models/)."""
    return Path(__file__).resolve().parents[2] / 'models' / DEFAULT_MODEL_NAME


def shipped_models() -> list:
    """Names of the emotion models shipped in the package (`emotion`, `emotion_accurate`, `emotion_fast`):
    the .tflite files with a labels file beside them (the face detectors there have none); a precision
    sibling (`emotion.float32.tflite`) belongs to its base name."""
    folder = default_model_path().parent
    return sorted(p.stem for p in folder.glob('*.tflite')
                  if '.' not in p.stem and (folder / f'{p.stem}.labels.txt').is_file())


def resolve_model_path(value: str) -> Path:
    """'' = the default model; a bare shipped-model name (`emotion_accurate`) = that file; else a path."""
    if not value:
        return default_model_path()
    if value in shipped_models():
        return default_model_path().parent / f'{value}.tflite'
    return Path(value).expanduser()


def labels_path_for(model_path) -> Path:
    """`<stem>.labels.txt`; for a precision sibling (`x.float32.tflite`) also `x.labels.txt`; else labels.txt."""
    model_path = Path(model_path)
    own = model_path.with_name(model_path.stem + '.labels.txt')
    if own.exists():
        return own
    base, _, suffix = model_path.stem.rpartition('.')
    if base and suffix in PRECISIONS:
        sibling = model_path.with_name(base + '.labels.txt')
        if sibling.exists():
            return sibling
    return model_path.with_name('labels.txt')


PRECISIONS = ('int8', 'float32')


def weights_precision(path) -> str:
    """'int8' when the model's tensors hold int8 (full-integer quantised), else 'float32'."""
    from ai_edge_litert.interpreter import Interpreter
    try:
        details = Interpreter(model_path=str(path)).get_tensor_details()
    except (ValueError, RuntimeError) as exc:
        raise ModelLoadError(f'{path} is not a usable TFLite model: {exc}') from exc
    return 'int8' if any(t['dtype'] == np.int8 for t in details) else 'float32'


def precision_variants(model_path) -> dict:
    """{'int8': path, 'float32': path} of the exports of one model that exist: the file itself and its
    sibling `<stem>.float32.tflite` (or `<stem>.int8.tflite`), keyed by what their weights are."""
    model_path = Path(model_path)
    found = {}
    for cand in [model_path] + [model_path.with_name(f'{model_path.stem}.{p}.tflite') for p in PRECISIONS]:
        if cand.is_file():
            found.setdefault(weights_precision(cand), cand)
    return found


def _median_call_s(model: 'EmotionModel', batch: int, calls: int) -> float:
    x = np.random.default_rng(0).integers(0, 256, (batch, INPUT_SIZE, INPUT_SIZE), dtype=np.uint8)
    model.predict(x)
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        model.predict(x)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def load_fastest(model_path, precision: str = 'auto', num_threads: int = 2, calls: int = 15) -> tuple:
    """(EmotionModel, reason): the int8 or float32 export of `model_path`, whichever runs faster here.

    Why time rather than guess: int8 wins only where the CPU has int8 dot products (AVX-512 VNNI,
    AVX-VNNI, ARM dotprod); on an Intel Xeon without VNNI a float32 export ran 1.5x faster than int8.
    `auto` times both on a dummy batch of 1 and of 8 faces (median of `calls`, a few hundred ms in all)
    and keeps the one with the lower sum; `int8`/`float32` force one (ModelLoadError if it is missing).
    """
    if precision not in ('auto',) + PRECISIONS:
        raise ModelLoadError(f'model precision {precision!r}: choose auto, int8 or float32')
    variants = precision_variants(model_path)
    if not variants:
        raise ModelLoadError(f'model file {model_path} does not exist')
    if precision != 'auto':
        if precision not in variants:
            raise ModelLoadError(f'{model_path}: no {precision} export (have: {", ".join(sorted(variants))})')
        return EmotionModel(variants[precision], num_threads=num_threads), f'{precision} (forced by model_precision)'
    if len(variants) == 1:
        (kind, path), = variants.items()
        return EmotionModel(path, num_threads=num_threads), f'{kind} (the only export of {Path(model_path).name})'
    timed = {}
    for kind, path in variants.items():
        model = EmotionModel(path, num_threads=num_threads)
        timed[kind] = (_median_call_s(model, 1, calls), _median_call_s(model, 8, calls), model)
    best = min(timed, key=lambda k: timed[k][0] + timed[k][1])
    figures = ', '.join(f'{k} {t1 * 1e3:.3f} ms (1 face) / {t8 * 1e3:.3f} ms (8 faces)'
                        for k, (t1, t8, _) in sorted(timed.items()))
    return timed[best][2], f'{best}, faster on this CPU: {figures}'


def read_labels(path) -> list:
    try:
        text = Path(path).read_text(encoding='utf-8-sig')  # a BOM would glue itself to the first label
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f'labels file {path}: {exc.__class__.__name__}: {exc}') from exc
    labels = [canonical_label(line) for line in text.splitlines() if line.strip()]
    if not labels:
        raise ModelLoadError(f'labels file {path} holds no labels')
    if len(set(labels)) != len(labels):
        raise ModelLoadError(f'labels file {path} repeats a label: {labels}')
    return labels


def normalise_scores(raw: np.ndarray) -> np.ndarray:
    """Raw (N, C) model outputs -> rows of non-negative scores summing to 1 (int8 outputs sum to 1 only
    roughly); a row with a non-finite value or nothing positive becomes all-NaN, never a made-up answer."""
    raw = np.asarray(raw, dtype=np.float32)
    bad = ~np.all(np.isfinite(raw), axis=1)
    probs = np.maximum(np.where(np.isfinite(raw), raw, 0.0), 0.0)
    sums = probs.sum(axis=1, keepdims=True, dtype=np.float64)
    bad |= ~(sums[:, 0] > 0.0) | ~np.isfinite(sums[:, 0])
    probs = (probs / np.where(sums > 0.0, sums, 1.0)).astype(np.float32)
    probs[bad] = np.nan
    return probs


def scored_rows(probs: np.ndarray) -> np.ndarray:
    """Boolean mask of the rows of `probs` that hold usable (finite) scores."""
    return np.all(np.isfinite(np.asarray(probs)), axis=1)


def quantize_input(x: np.ndarray, details) -> np.ndarray:
    """Pixels 0..255 -> the input tensor's dtype (`details`: a LiteRT input detail), rounded and clipped."""
    dtype = details['dtype']
    if dtype == np.float32:
        return x.astype(np.float32)
    scale, zero = details['quantization']
    info = np.iinfo(dtype)
    return np.clip(np.round(x.astype(np.float32) / scale + zero), info.min, info.max).astype(dtype)


class EmotionModel:
    """A loaded classifier. Not thread-safe: give each thread its own instance.

    predict() resizes the interpreter's input for the batch (kept until a different batch size comes)
    and splits batches larger than `max_batch` so memory stays bounded. With `embedding` (the default) the
    network's embedding is a second output where the model has one (core/emotion/embedding.py):
    predict_with_embedding() returns it, `embedding_dim` is its size (0: none, `embedding_note` says why).
    """

    def __init__(self, model_path, labels_path=None, num_threads: int = 2, max_batch: int = 64,
                 embedding: bool = True):
        self.path = Path(model_path)
        if not self.path.is_file():
            raise ModelLoadError(f'model file {self.path} does not exist')
        if int(num_threads) < 1 or int(max_batch) < 1:
            raise ModelLoadError(f'num_threads and max_batch must be >= 1, got {num_threads}, {max_batch}')
        self.max_batch = int(max_batch)
        lpath = Path(labels_path) if labels_path else labels_path_for(self.path)
        if not lpath.is_file():
            raise ModelLoadError(f'labels file {lpath} for {self.path.name} does not exist')
        self._labels = tuple(read_labels(lpath))
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as exc:
            raise ModelLoadError(f'LiteRT is not installed (pip install ai-edge-litert): {exc}') from exc
        self._emb, self.embedding_dim, self.embedding_note = None, 0, 'not asked for'
        if embedding:
            self._load_with_embedding(Interpreter, int(num_threads))
        if self._emb is None:
            try:
                self._interp = Interpreter(model_path=str(self.path), num_threads=int(num_threads))
                self._interp.allocate_tensors()
            except (ValueError, RuntimeError) as exc:
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
                raise ModelLoadError(f'{self.path} is not a usable TFLite model: {reason}') from exc
            inputs, outputs = self._interp.get_input_details(), self._interp.get_output_details()
            if len(inputs) != 1 or len(outputs) != 1:
                raise ModelLoadError(f'{self.path}: expected 1 input and 1 output, got {len(inputs)} and '
                                     f'{len(outputs)}')
            self._in, self._out = inputs[0], outputs[0]
        shape = tuple(int(s) for s in self._in['shape'])
        if shape[1:] not in ((INPUT_SIZE, INPUT_SIZE, 1), (INPUT_SIZE, INPUT_SIZE)):
            raise ModelLoadError(f'{self.path}: input shape {shape}, expected (N, 48, 48, 1) or (N, 48, 48)')
        self._in_shape = shape[1:]
        out_shape = tuple(int(s) for s in self._out['shape'])
        if len(out_shape) != 2 or out_shape[1] != len(self._labels):
            raise ModelLoadError(f'{self.path}: model outputs {out_shape[-1]} classes but {lpath.name} lists '
                                 f'{len(self._labels)} labels')
        self._batch = shape[0]

    def _load_with_embedding(self, interpreter, num_threads: int) -> None:
        """The interpreter with the embedding as second output; on any doubt none is set (the caller loads the
        plain file) and `embedding_note` says why."""
        try:
            content, emb_index = with_embedding_output(self.path.read_bytes())
            interp = interpreter(model_content=content, num_threads=num_threads)
            interp.allocate_tensors()
        except (EmbeddingUnavailable, OSError, ValueError, RuntimeError) as exc:
            self.embedding_note = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
            return
        inputs, outputs = interp.get_input_details(), {d['index']: d for d in interp.get_output_details()}
        emb = outputs.pop(emb_index, None)
        if len(inputs) != 1 or len(outputs) != 1 or emb is None or len(emb['shape']) != 2:
            self.embedding_note = 'the embedding is not a (N, D) output beside the probabilities'
            return
        self._interp, self._in, self._out, self._emb = interp, inputs[0], next(iter(outputs.values())), emb
        self.embedding_dim, self.embedding_note = int(emb['shape'][1]), ''

    @property
    def labels(self) -> tuple:
        return self._labels

    @property
    def num_classes(self) -> int:
        return len(self._labels)

    def _to_input(self, x: np.ndarray) -> np.ndarray:
        return quantize_input(x, self._in)

    def _from_output(self, y: np.ndarray) -> np.ndarray:
        return self._dequantize(y, self._out)

    @staticmethod
    def _dequantize(y: np.ndarray, details) -> np.ndarray:
        if details['dtype'] == np.float32:
            return y.astype(np.float32, copy=True)
        scale, zero = details['quantization']
        return ((y.astype(np.float32) - zero) * scale).astype(np.float32)

    def _run(self, chunk: np.ndarray, with_embedding: bool = False):
        n = len(chunk)
        if n != self._batch:
            self._interp.resize_tensor_input(self._in['index'], (n,) + self._in_shape)
            self._interp.allocate_tensors()
            self._batch = n
        self._interp.set_tensor(self._in['index'], self._to_input(chunk.reshape((n,) + self._in_shape)))
        self._interp.invoke()
        probs = normalise_scores(self._from_output(self._interp.get_tensor(self._out['index'])))
        if not with_embedding:
            return probs
        return probs, self._dequantize(self._interp.get_tensor(self._emb['index']), self._emb)

    def predict(self, crops) -> np.ndarray:
        """uint8 crops (N, 48, 48) (or (N, 48, 48, 1), or one (48, 48)) -> float32 (N, C) probabilities.

        A row the model could not score (NaN/inf or all-zero output) comes back all-NaN: select the
        usable rows with `scored_rows` before comparing or publishing them.
        """
        x = self._crops(crops)
        if len(x) == 0:
            return np.zeros((0, self.num_classes), np.float32)
        return np.concatenate([self._run(x[i:i + self.max_batch]) for i in range(0, len(x), self.max_batch)])

    def predict_with_embedding(self, crops) -> tuple:
        """(probabilities (N, C), embeddings (N, embedding_dim)) float32; ValueError where the model has none."""
        if self._emb is None:
            raise ValueError(f'{self.path.name} exposes no embedding: {self.embedding_note}')
        x = self._crops(crops)
        if len(x) == 0:
            return np.zeros((0, self.num_classes), np.float32), np.zeros((0, self.embedding_dim), np.float32)
        parts = [self._run(x[i:i + self.max_batch], True) for i in range(0, len(x), self.max_batch)]
        return np.concatenate([p for p, _ in parts]), np.concatenate([e for _, e in parts])

    @staticmethod
    def _crops(crops) -> np.ndarray:
        x = np.asarray(crops)
        if x.dtype != np.uint8:
            raise ValueError(f'crops must be uint8 (use emotion_ros.core.faces.crop.crop_face), got {x.dtype}')
        if x.ndim == 2:
            x = x[None]
        if x.ndim == 4 and x.shape[3] == 1:
            x = x[..., 0]
        if x.ndim != 3 or x.shape[1:] != (INPUT_SIZE, INPUT_SIZE):
            raise ValueError(f'crops must be (N, 48, 48), got {x.shape}')
        return x
