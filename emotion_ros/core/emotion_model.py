"""Emotion classifier inference with LiteRT only (no TensorFlow import: nodes start fast and run on
machines that have just the LiteRT wheel).

A model is a `.tflite` file taking (N, 48, 48, 1) (or (N, 48, 48)) pixels 0..255 — float32, or
int8/uint8 with quantisation parameters — and returning N x C probabilities, plus a labels file with
one class name per line: `<model stem>.labels.txt` beside the model, else `labels.txt` in its folder.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from emotion_ros.core.labels import canonical_label

INPUT_SIZE = 48
DEFAULT_MODEL_NAME = 'emotion.tflite'


class ModelLoadError(RuntimeError):
    """The model or its labels cannot be used; the message is one line saying why."""


def default_model_path() -> Path:
    """The model shipped inside the package (emotion_ros/models/)."""
    return Path(__file__).resolve().parent.parent / 'models' / DEFAULT_MODEL_NAME


def shipped_models() -> list:
    """Names of the models shipped in the package (`emotion`, `emotion_accurate`, `emotion_fast`)."""
    return sorted(p.stem for p in default_model_path().parent.glob('*.tflite'))


def resolve_model_path(value: str) -> Path:
    """'' = the default model; a bare shipped-model name (`emotion_accurate`) = that file; else a path."""
    if not value:
        return default_model_path()
    if value in shipped_models():
        return default_model_path().parent / f'{value}.tflite'
    return Path(value).expanduser()


def labels_path_for(model_path) -> Path:
    model_path = Path(model_path)
    own = model_path.with_name(model_path.stem + '.labels.txt')
    return own if own.exists() else model_path.with_name('labels.txt')


def read_labels(path) -> list:
    try:
        text = Path(path).read_text(encoding='utf-8')
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f'labels file {path}: {exc.__class__.__name__}: {exc}') from exc
    labels = [canonical_label(line) for line in text.splitlines() if line.strip()]
    if not labels:
        raise ModelLoadError(f'labels file {path} holds no labels')
    if len(set(labels)) != len(labels):
        raise ModelLoadError(f'labels file {path} repeats a label: {labels}')
    return labels


class EmotionModel:
    """A loaded classifier. Not thread-safe: give each thread its own instance.

    predict() resizes the interpreter's input for the batch (kept until a different batch size comes)
    and splits batches larger than `max_batch` so memory stays bounded.
    """

    def __init__(self, model_path, labels_path=None, num_threads: int = 2, max_batch: int = 64):
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
        try:
            self._interp = Interpreter(model_path=str(self.path), num_threads=int(num_threads))
            self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
            raise ModelLoadError(f'{self.path} is not a usable TFLite model: {reason}') from exc
        inputs, outputs = self._interp.get_input_details(), self._interp.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelLoadError(f'{self.path}: expected 1 input and 1 output, got {len(inputs)} and {len(outputs)}')
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

    @property
    def labels(self) -> tuple:
        return self._labels

    @property
    def num_classes(self) -> int:
        return len(self._labels)

    def _to_input(self, x: np.ndarray) -> np.ndarray:
        dtype = self._in['dtype']
        if dtype == np.float32:
            return x.astype(np.float32)
        scale, zero = self._in['quantization']
        info = np.iinfo(dtype)
        return np.clip(np.round(x.astype(np.float32) / scale + zero), info.min, info.max).astype(dtype)

    def _from_output(self, y: np.ndarray) -> np.ndarray:
        if self._out['dtype'] == np.float32:
            return y.astype(np.float32, copy=True)
        scale, zero = self._out['quantization']
        return ((y.astype(np.float32) - zero) * scale).astype(np.float32)

    def _run(self, chunk: np.ndarray) -> np.ndarray:
        n = len(chunk)
        if n != self._batch:
            self._interp.resize_tensor_input(self._in['index'], (n,) + self._in_shape)
            self._interp.allocate_tensors()
            self._batch = n
        self._interp.set_tensor(self._in['index'], self._to_input(chunk.reshape((n,) + self._in_shape)))
        self._interp.invoke()
        probs = np.maximum(self._from_output(self._interp.get_tensor(self._out['index'])), 0.0)
        return probs / np.maximum(probs.sum(axis=1, keepdims=True), 1e-12)  # int8 outputs sum to 1 only roughly

    def predict(self, crops) -> np.ndarray:
        """uint8 crops (N, 48, 48) (or (N, 48, 48, 1), or one (48, 48)) -> float32 (N, C) probabilities."""
        x = np.asarray(crops)
        if x.dtype != np.uint8:
            raise ValueError(f'crops must be uint8 (use emotion_ros.core.face_crop.crop_face), got {x.dtype}')
        if x.ndim == 2:
            x = x[None]
        if x.ndim == 4 and x.shape[3] == 1:
            x = x[..., 0]
        if x.ndim != 3 or x.shape[1:] != (INPUT_SIZE, INPUT_SIZE):
            raise ValueError(f'crops must be (N, 48, 48), got {x.shape}')
        if len(x) == 0:
            return np.zeros((0, self.num_classes), np.float32)
        return np.concatenate([self._run(x[i:i + self.max_batch]) for i in range(0, len(x), self.max_batch)])
