"""Face detectors behind one interface: image in, face boxes in that image's pixels out.

Backends (`create_detector(name, **options)`):
- `haar`: OpenCV's frontal-face Haar cascade (the seed's design); no scores, so every box scores 1.0.
- `yunet`: YuNet from libfacedetection via `yuface` (weights compiled into the library).
- `blazeface`: MediaPipe's BlazeFace models (shipped in emotion_ros/models, Apache-2.0), run with LiteRT
  directly; anchors, decoding and weighted NMS follow MediaPipe's face_detection graphs (vectorised numpy).

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

import inspect
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from emotion_ros.core.frames.encoding import as_bgr

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
    resizable: bool          # fully convolutional; MediaPipe's full-range graphs reshape to a fixed 2304 anchors
    input_rows: int = 0      # fixed input height when not input_size (square)
    pixels: bool = False     # takes BGR uint8 pixels (training/blazeface_export.py), not RGB floats in -1..1


_BLAZEFACE_MODELS = {
    'short': _BlazeFaceModel('face_detection_short_range.tflite', 128, (8, 16), (2, 6), True),
    'full': _BlazeFaceModel('face_detection_full_range.tflite', 192, (4,), (1,), False),
    'full_sparse': _BlazeFaceModel('face_detection_full_range_sparse.tflite', 192, (4,), (1,), False),
    'full_sparse_fast': _BlazeFaceModel('face_detection_full_range_sparse_fast.tflite', 192, (4,), (1,), False, 144,
                                        True),
}
MODEL_DIR = Path(__file__).resolve().parents[2] / 'models'


def _anchor_centres(model: _BlazeFaceModel, width: int, height: int) -> np.ndarray:
    """(N, 2) anchor centres in input pixels, in the order of the model's outputs (MediaPipe's
    SsdAnchorsCalculator with fixed-size anchors: cells row by row, `anchors_per_cell` per cell)."""
    centres = []
    for stride, per_cell in zip(model.strides, model.anchors_per_cell):
        ys, xs = np.mgrid[0:height // stride, 0:width // stride]
        grid = np.stack([(xs.ravel() + 0.5) * stride, (ys.ravel() + 0.5) * stride], axis=1)
        centres.append(np.repeat(grid, per_cell, axis=0))
    return np.concatenate(centres).astype(np.float32)


def _weighted_nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """MediaPipe's WEIGHTED non-max suppression: overlapping boxes are averaged by score, not dropped.

    boxes (N, 4) as x0, y0, x1, y1; returns (M, 5) x0, y0, x1, y1, score (the cluster's best score).
    One IoU matrix for all pairs, then one pass per kept face (a handful), not per candidate.
    """
    order = np.argsort(-scores, kind='stable')
    boxes, scores = boxes[order].astype(np.float64), scores[order].astype(np.float64)
    areas = np.prod(np.clip(boxes[:, 2:] - boxes[:, :2], 0, None), axis=1)
    top_left = np.maximum(boxes[:, None, :2], boxes[None, :, :2])
    bottom_right = np.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    overlaps = inter / np.maximum(areas[:, None] + areas[None, :] - inter, 1e-12) > iou_threshold
    alive = np.ones(len(boxes), dtype=bool)
    kept = []
    for i in range(len(boxes)):
        if not alive[i]:
            continue
        cluster = alive & overlaps[i]
        cluster[i] = True
        weights = scores[cluster]
        kept.append([*(weights @ boxes[cluster]) / weights.sum(), scores[i]])
        alive &= ~cluster
    return np.asarray(kept, dtype=np.float64).reshape(-1, 5)


class BlazeFaceDetector(FaceDetector):
    """MediaPipe BlazeFace on LiteRT: `model` 'short' (128 px input, faces within ~2 m), 'full' or
    'full_sparse' (192 px input, within ~5 m; the sparse one is the pruned model MediaPipe ships, and it
    measured as accurate and as fast here), or 'full_sparse_fast' (the default): the same sparse network
    rebuilt by training/blazeface_export.py with a 192x144 input (a 4:3 frame fills it; padded to 192x192,
    a quarter of the work went on padding) that takes BGR uint8 pixels straight from the resize and
    regresses boxes only. Model files ship in emotion_ros/models (Apache-2.0, see NOTICE).

    The frame is scaled to fit the model's input (`input_size` wide) and padded right/below; resizable models
    take the frame's aspect ratio (rounded up to the net's stride), and for 'short' `input_size` may be
    raised for smaller faces, while MediaPipe's full-range graphs are fixed at 192x192 (their upsampling
    and reshapes have constant sizes). Per frame: 2x area halvings + one bilinear resize (for the pixel
    exports straight into the interpreter's input), one invoke, decoding of the candidates above
    `min_score` only. Where the time goes (640x480, bench/bench_detectors.py): the invoke is ~85 %; the
    old single INTER_AREA resize alone was 1 ms. `num_threads` is explicit (default 1): a second XNNPACK
    thread cost ~25 % more CPU time per frame for little wall time, and on a busy 2-core machine it only
    competes with the classifier and the camera. Faces narrower than ~32 px in a 640 px frame are missed
    (full range; ~80 px for 'short' at 128).
    """

    name = 'blazeface'
    NMS_IOU = 0.3
    RAW_SCORE_LIMIT = 80.0

    def __init__(self, min_score: float = 0.5, max_side: int = 640, model: str = 'full_sparse_fast',
                 num_threads: int = 1, input_size: int = 0):
        super().__init__(min_score, max_side)
        if model not in _BLAZEFACE_MODELS:
            raise ValueError(f'blazeface model must be one of {tuple(_BLAZEFACE_MODELS)}, got {model!r}')
        self.num_threads = _int_option('num_threads', num_threads, 1, 64)
        spec = _BLAZEFACE_MODELS[model]
        self.input_size = _int_option('input_size', input_size, 0, 1024) or spec.input_size
        if self.input_size != spec.input_size and not spec.resizable:
            raise ValueError(f'input_size: the {model} model only takes {spec.input_size} px, got {input_size}')
        if self.input_size % max(spec.strides):
            raise ValueError(f'input_size must be a multiple of {max(spec.strides)}, got {input_size}')
        from ai_edge_litert.interpreter import Interpreter
        self.model = model
        self._spec = spec
        path = MODEL_DIR / spec.file
        if not path.is_file():
            raise RuntimeError(f'BlazeFace model file missing: {path}')
        self._interpreter = Interpreter(model_path=str(path), num_threads=self.num_threads)
        self._input = self._interpreter.get_input_details()[0]['index']
        outputs = sorted(self._interpreter.get_output_details(), key=lambda d: -int(d['shape'][-1]))
        self._regressors, self._classifiers = outputs[0]['index'], outputs[1]['index']
        self._input_view = self._interpreter.tensor(self._input)
        self._shape = None

    def _prepare(self, height: int, width: int) -> None:
        """Input tensor, anchors and resize buffers for frames of this size (once per frame size)."""
        bgr_shape = (height, width)
        size, step = self.input_size, max(self._spec.strides)
        rows = size if self._spec.resizable else self._spec.input_rows or size
        scale = min(size / width, rows / height)
        new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
        in_w, in_h = (-(-new_w // step) * step, -(-new_h // step) * step) if self._spec.resizable else (size, rows)
        self._interpreter.resize_tensor_input(self._input, [1, in_h, in_w, 3], strict=False)
        self._interpreter.allocate_tensors()
        self._anchors = _anchor_centres(self._spec, in_w, in_h)
        expected = int(self._interpreter.get_output_details()[0]['shape'][1])
        if len(self._anchors) != expected:
            raise RuntimeError(f'{self._spec.file}: {expected} outputs but {len(self._anchors)} anchors')
        self._direct = self._spec.pixels and new_w == in_w     # whole rows: the resize can write into the input
        self._resized = np.empty((new_h, new_w, 3), np.uint8)
        self._halves = []
        while width >= 2 * new_w and height >= 2 * new_h:
            width, height = width // 2, height // 2
            self._halves.append(np.empty((height, width, 3), np.uint8))
        self._scale, self._shape = scale, bgr_shape

    def _resize(self, bgr: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Exact 2x area halvings (OpenCV's fast path) while the frame is at least twice the input, then
        bilinear: 0.19 ms for 640x480 -> 192x144 against 0.96 ms for one INTER_AREA resize (whose general
        path is slow at a 3.33x ratio), with recall on facedet_small as good (100 % vs 98 % at 0.6)."""
        for half in self._halves:
            bgr = cv2.resize(bgr, half.shape[1::-1], dst=half, interpolation=cv2.INTER_AREA)
        return cv2.resize(bgr, out.shape[1::-1], dst=out, interpolation=cv2.INTER_LINEAR)

    def _fill_input(self, bgr: np.ndarray) -> None:
        """The frame into the input tensor, padded below/right with black (-1, MediaPipe's padding); the
        padding is rewritten every frame because LiteRT may reuse the input's memory between invokes."""
        tensor = self._input_view()[0]
        new_h, new_w = self._resized.shape[:2]
        if self._spec.pixels:
            tensor[new_h:] = 0
            if self._direct:
                self._resize(bgr, tensor[:new_h])
            else:
                tensor[:new_h, new_w:] = 0
                tensor[:new_h, :new_w] = self._resize(bgr, self._resized)
            return
        resized = self._resize(bgr, self._resized)
        tensor.fill(-1.0)
        area = tensor[:new_h, :new_w]
        np.multiply(resized[:, :, ::-1], np.float32(2 / 255), out=area, casting='unsafe')
        area -= 1.0

    def _detect(self, bgr: np.ndarray) -> np.ndarray:
        if bgr.shape[:2] != self._shape:
            self._prepare(*bgr.shape[:2])
        self._fill_input(bgr)                     # returns no view: LiteRT refuses to invoke while one lives
        self._interpreter.invoke()
        logits = self._interpreter.get_tensor(self._classifiers).reshape(-1)
        threshold = -np.log(1 / min(max(self.min_score, 1e-6), 1 - 1e-6) - 1)   # min_score may change at run time
        keep = np.flatnonzero(logits > threshold)
        if not len(keep):
            return np.empty((0, 5))
        raw = self._interpreter.get_tensor(self._regressors).reshape(len(logits), -1)[keep, :4]
        scores = 1 / (1 + np.exp(-np.clip(logits[keep], -self.RAW_SCORE_LIMIT, self.RAW_SCORE_LIMIT)))
        centres = raw[:, :2] + self._anchors[keep]
        half = raw[:, 2:4] / 2
        merged = _weighted_nms(np.hstack([centres - half, centres + half]), scores, self.NMS_IOU)
        merged[:, :4] /= self._scale
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
