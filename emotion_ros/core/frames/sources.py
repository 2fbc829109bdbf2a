"""Where frames come from: webcam index, video file, image folder/glob, stream URL, or the built-in demo.

Each source yields BGR uint8 frames through `read()`; `None` means "no frame now" (end of a file source,
or a dropped device/stream). `open_source` validates the spec and raises SourceError with the reason.
"""
from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass
from typing import List, Optional

import cv2
import numpy as np

from emotion_ros.core.frames.encoding import ImageDecodeError
from emotion_ros.core.frames.header import read_image_file

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp', '.pgm', '.ppm')
STREAM_TIMEOUT_MS = 5000
_URL = re.compile(r'^[a-zA-Z][a-zA-Z0-9+.-]*://')


class SourceError(RuntimeError):
    """The source cannot be opened or has no frames; the message says why."""


@dataclass
class SourceInfo:
    kind: str          # 'webcam' | 'file' | 'folder' | 'url' | 'demo'
    description: str
    fps: float         # native rate if known, else 0
    finite: bool       # True when the source ends (file, folder, demo)
    live: bool         # True when a drop should be retried (webcam, url)


class FrameSource:
    info: SourceInfo

    def read(self) -> Optional[np.ndarray]:
        raise NotImplementedError

    def rewind(self) -> None:
        """Start a finite source over (for `loop`)."""

    def reopen(self) -> bool:
        """Try to reconnect a live source; True on success."""
        return False

    def close(self) -> None:
        pass


def bounded_size(width: int, height: int, max_width: int = 0, max_height: int = 0) -> tuple:
    """(w, h) of a width x height frame scaled down to fit max_width x max_height (0 = unbounded), aspect kept.

    A bound never stretches (a 16:9 source in 640x480 becomes 640x360) and never enlarges."""
    scale = min([1.0] + [bound / size for bound, size in ((max_width, width), (max_height, height)) if bound > 0])
    if scale >= 1.0:
        return width, height
    return max(1, int(round(width * scale))), max(1, int(round(height * scale)))


def _fit(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    if frame.ndim == 2:
        frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    elif frame.shape[2] == 4:
        frame = cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    size = bounded_size(frame.shape[1], frame.shape[0], width, height)
    if size != (frame.shape[1], frame.shape[0]):
        frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
    return frame


class CaptureSource(FrameSource):
    """cv2.VideoCapture: webcams, video files and stream URLs."""

    def __init__(self, target, info: SourceInfo, width: int, height: int):
        self._target, self.info, self._w, self._h = target, info, width, height
        self._cap = None
        if not self._open():
            raise SourceError(f'cannot open {info.kind} {info.description}')
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        if fps and 0 < fps < 1000:
            self.info.fps = float(fps)

    def _open(self) -> bool:
        if self._cap is not None:
            self._cap.release()
        if self.info.kind == 'url':
            # Bounded waits: FFmpeg's defaults let one open/read of a stream that accepts but never answers
            # block the camera's callback (and with it the node) for 30 s per reconnect attempt.
            self._cap = cv2.VideoCapture(self._target, cv2.CAP_FFMPEG,
                                         [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, STREAM_TIMEOUT_MS,
                                          cv2.CAP_PROP_READ_TIMEOUT_MSEC, STREAM_TIMEOUT_MS])
        else:
            self._cap = cv2.VideoCapture(self._target)
        if self.info.kind == 'webcam' and self._w > 0 and self._h > 0:
            self._cap.set(cv2.CAP_PROP_FRAME_WIDTH, self._w)
            self._cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self._h)
        return bool(self._cap.isOpened())

    def read(self) -> Optional[np.ndarray]:
        ok, frame = self._cap.read()
        if not ok or frame is None or frame.size == 0:
            return None
        return _fit(frame, self._w, self._h)

    def rewind(self) -> None:
        if not self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0):
            self._open()

    def reopen(self) -> bool:
        return self._open()

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()


class ImageListSource(FrameSource):
    """A folder or glob of still images, in name order; unreadable files are skipped and reported."""

    def __init__(self, paths: List[str], info: SourceInfo, width: int, height: int):
        self._paths, self.info, self._w, self._h = paths, info, width, height
        self._i = 0
        self.skipped: List[str] = []

    def read(self) -> Optional[np.ndarray]:
        while self._i < len(self._paths):
            path = self._paths[self._i]
            self._i += 1
            try:   # size checked in the header first: a folder may hold a decompression bomb
                return _fit(read_image_file(path), self._w, self._h)
            except ImageDecodeError:
                self.skipped.append(path)
        return None

    def rewind(self) -> None:
        self._i = 0


class DemoSource(FrameSource):
    """A smiling portrait (scikit-image's astronaut photograph) filmed by a slowly panning, zooming camera;
    with `faces` > 1, a grid of that many swaying copies of her head (a crowd for load tests).

    Needs no file: the photograph ships inside the scikit-image wheel. Deterministic.
    """

    HEAD = (130, 10, 190, 230)  # x, y, w, h of the head in the 512x512 photograph

    SIZE = (640, 480)  # the clip's own size; width/height bound it like any source's

    def __init__(self, width: int = 0, height: int = 0, frames: int = 150, fps: float = 30.0, faces: int = 1):
        from skimage import data as skdata
        rgb = skdata.astronaut()
        self._photo = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        self._w, self._h = bounded_size(*self.SIZE, width, height)
        self._n, self._i, self._faces = frames, 0, faces
        what = 'astronaut portrait' if faces == 1 else f'{faces} astronaut heads'
        self.info = SourceInfo('demo', f'{what}, {frames} frames', fps, True, False)
        if faces > 1:
            self._cols = int(np.ceil(np.sqrt(faces)))
            self._rows = int(np.ceil(faces / self._cols))
            x, y, w, h = self.HEAD
            cell_w, cell_h = self._w // self._cols, self._h // self._rows
            scale = 0.85 * min(cell_w / w, cell_h / h)
            self._head = cv2.resize(self._photo[y:y + h, x:x + w], (int(w * scale), int(h * scale)),
                                    interpolation=cv2.INTER_AREA)
            self._background = np.full((self._h, self._w, 3), 180, np.uint8)

    def _crowd(self, t: float) -> np.ndarray:
        frame = self._background.copy()
        hh, hw = self._head.shape[:2]
        cell_w, cell_h = self._w // self._cols, self._h // self._rows
        for k in range(self._faces):
            r, c = divmod(k, self._cols)
            dx = int(round((cell_w - hw) / 2 * (1 + 0.8 * np.sin(2 * np.pi * (t + k / 7)))))
            dy = int(round((cell_h - hh) / 2 * (1 + 0.8 * np.cos(2 * np.pi * (t + k / 5)))))
            x0, y0 = c * cell_w + dx, r * cell_h + dy
            frame[y0:y0 + hh, x0:x0 + hw] = self._head
        return frame

    def read(self) -> Optional[np.ndarray]:
        if self._i >= self._n:
            return None
        t = self._i / max(1, self._n - 1)
        self._i += 1
        if self._faces > 1:
            return self._crowd(t)
        ph, pw = self._photo.shape[:2]
        zoom = 1.0 + 0.25 * np.sin(np.pi * t)
        cx = pw * (0.5 + 0.06 * np.sin(2 * np.pi * t))
        cy = ph * (0.5 + 0.04 * np.cos(2 * np.pi * t))
        scale = zoom * min(self._w / pw, self._h / ph) * 1.1
        m = np.array([[scale, 0, self._w / 2 - scale * cx], [0, scale, self._h / 2 - scale * cy]], np.float32)
        return cv2.warpAffine(self._photo, m, (self._w, self._h), borderMode=cv2.BORDER_REFLECT)

    def rewind(self) -> None:
        self._i = 0


def describe_source(spec: str) -> SourceInfo:
    """Classify a source spec without opening it."""
    spec = str(spec).strip()
    if re.fullmatch(r'demo(:\d+)?', spec):
        return SourceInfo('demo', 'built-in demo', 30.0, True, False)
    if re.fullmatch(r'\d+', spec):
        return SourceInfo('webcam', f'/dev/video{spec}', 0.0, False, True)
    if spec.startswith('/dev/video'):
        return SourceInfo('webcam', spec, 0.0, False, True)
    if _URL.match(spec):
        return SourceInfo('url', spec, 0.0, False, True)
    if os.path.isdir(spec) or any(ch in spec for ch in '*?['):
        return SourceInfo('folder', spec, 0.0, True, False)
    return SourceInfo('file', spec, 0.0, True, False)


def open_source(spec: str, width: int = 0, height: int = 0, demo_frames: int = 150) -> FrameSource:
    """Open a source; width/height > 0 bound every frame (scaled down to fit, aspect ratio kept; webcams are
    asked for that size)."""
    info = describe_source(spec)
    if info.kind == 'demo':
        faces = int(spec.split(':')[1]) if ':' in spec else 1
        if not 1 <= faces <= 64:
            raise SourceError(f'demo:N takes 1 to 64 faces, got {faces}')
        return DemoSource(width, height, demo_frames, faces=faces)
    if info.kind == 'webcam':
        index = int(spec) if str(spec).strip().isdigit() else str(spec)
        return CaptureSource(index, info, width, height)
    if info.kind == 'url':
        return CaptureSource(str(spec), info, width, height)
    if info.kind == 'folder':
        pattern = os.path.join(spec, '*') if os.path.isdir(spec) else spec
        paths = sorted(p for p in glob.glob(pattern) if p.lower().endswith(IMAGE_EXTENSIONS))
        if not paths:
            raise SourceError(f'no images ({", ".join(IMAGE_EXTENSIONS)}) match {spec}')
        return ImageListSource(paths, info, width, height)
    if not os.path.isfile(spec):
        raise SourceError(f'video file not found: {spec}')
    return CaptureSource(str(spec), info, width, height)
