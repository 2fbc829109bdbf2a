"""The one face crop shared by dataset import and the live classifier: detector box -> 48x48 gray.

Why this margin: FER2013's crops were made by a face detector and re-centred, so the face fills the
frame from mid-forehead to just under the chin. We take a square around the detector box's centre
whose side is `margin` x the longer box side. Running the project's detectors on FER2013 val images
(padded, upscaled) shows which square reproduces the FER frame: 48 / longer box side has median 0.98
for YuNet (the default backend; boxes are 1.25x taller than wide), 1.03 for Haar and 1.09 for
BlazeFace (docs/face_crop.md). So the default is 1.0 (YuNet, Haar); `MARGIN_FOR_BACKEND` has the
measured value per backend. Parts of the square outside the image are filled by replicating the edge
pixels, which keeps the face where the model expects it (a shifted, cut-off crop costs more accuracy
than a smeared border).
"""
from __future__ import annotations

import cv2
import numpy as np

from emotion_ros.core.image_encoding import as_gray

DEFAULT_MARGIN = 1.0
MARGIN_FOR_BACKEND = {'yunet': 1.0, 'haar': 1.03, 'blazeface': 1.09}
DEFAULT_SIZE = 48


def _box_xywh(box) -> tuple:
    if all(hasattr(box, k) for k in ('x', 'y', 'w', 'h')):
        x, y, w, h = box.x, box.y, box.w, box.h
    else:
        try:
            x, y, w, h = (box[i] for i in range(4))
        except (TypeError, IndexError, KeyError) as exc:
            raise ValueError(f'box must be (x, y, w, h) or a FaceBox, got {box!r}') from exc
    x, y, w, h = (float(v) for v in (x, y, w, h))
    if not all(np.isfinite(v) for v in (x, y, w, h)) or w <= 0 or h <= 0:
        raise ValueError(f'box needs finite coordinates and positive width/height, got {(x, y, w, h)}')
    return x, y, w, h


def crop_square(box, margin: float = DEFAULT_MARGIN) -> tuple:
    """Integer (x0, y0, side) of the square crop for a box, before clipping to the image."""
    x, y, w, h = _box_xywh(box)
    side = max(1, int(round(max(w, h) * margin)))
    cx, cy = x + w / 2.0, y + h / 2.0
    return int(round(cx - side / 2.0)), int(round(cy - side / 2.0)), side


def crop_face(image: np.ndarray, box, size: int = DEFAULT_SIZE, margin: float = DEFAULT_MARGIN) -> np.ndarray:
    """uint8 (size, size) gray crop of the face in `box` ((x, y, w, h) pixels or a FaceBox).

    Raises ValueError for a non-uint8 or oddly shaped image, a degenerate box, or a box that does not
    overlap the image at all (there is no face to crop then).
    """
    gray = as_gray(image)
    if gray.size == 0:
        raise ValueError('empty image')
    ih, iw = gray.shape
    x0, y0, side = crop_square(box, margin)
    x1, y1 = x0 + side, y0 + side
    if x1 <= 0 or y1 <= 0 or x0 >= iw or y0 >= ih:
        raise ValueError(f'box {tuple(_box_xywh(box))} lies outside the {iw}x{ih} image')
    patch = gray[max(y0, 0):min(y1, ih), max(x0, 0):min(x1, iw)]
    pad = (max(0, -y0), max(0, y1 - ih), max(0, -x0), max(0, x1 - iw))
    if any(pad):
        patch = cv2.copyMakeBorder(patch, *pad, borderType=cv2.BORDER_REPLICATE)
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return np.ascontiguousarray(cv2.resize(patch, (size, size), interpolation=interp))
