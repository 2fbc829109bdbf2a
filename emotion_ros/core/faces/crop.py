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

Hostile boxes (issue 18: 200000x200000, width 2^31) are refused or bounded before any pixel work: a box
that misses the image, or whose crop square is more than `MAX_BOX_FACTOR` times the image's longer side,
is refused; a padded crop larger than `MAX_PADDED_PIXELS` is scaled down before it is padded, so no crop
ever allocates more than the image plus 48x48.
"""
from __future__ import annotations

from math import isfinite

import cv2
import numpy as np

from emotion_ros.core.frames.encoding import _uint8_pixels, as_gray

DEFAULT_MARGIN = 1.0
MARGIN_FOR_BACKEND = {'yunet': 1.0, 'haar': 1.03, 'blazeface': 1.09}
DEFAULT_SIZE = 48
MAX_BOX_FACTOR = 8.0          # a crop square wider than 8x the image is no face the detector found
MAX_PADDED_PIXELS = 2048 * 2048
MAX_MARGIN = 4.0


def margin_of(crop_margin: float) -> float:
    """The margin for boxes whose FaceArray says `crop_margin`: 0 (unknown), non-finite or outside
    (0, MAX_MARGIN] give DEFAULT_MARGIN, so a hostile value never scales a crop without bound."""
    m = float(crop_margin)
    return m if np.isfinite(m) and 0.0 < m <= MAX_MARGIN else DEFAULT_MARGIN


def _box_xywh(box) -> tuple:
    if all(hasattr(box, k) for k in ('x', 'y', 'w', 'h')):
        x, y, w, h = box.x, box.y, box.w, box.h
    else:
        try:
            x, y, w, h = (box[i] for i in range(4))
        except (TypeError, IndexError, KeyError) as exc:
            raise ValueError(f'box must be (x, y, w, h) or a FaceBox, got {box!r}'[:200]) from exc
    try:
        x, y, w, h = float(x), float(y), float(w), float(h)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f'box coordinates must be numbers: {exc}') from exc
    if not (isfinite(x) and isfinite(y) and isfinite(w) and isfinite(h)) or w <= 0 or h <= 0:
        raise ValueError(f'box needs finite coordinates and positive width/height, got {(x, y, w, h)}')
    return x, y, w, h


def crop_square(box, margin: float = DEFAULT_MARGIN) -> tuple:
    """Integer (x0, y0, side) of the square crop for a box, before clipping to the image."""
    x, y, w, h = _box_xywh(box)
    side = max(1, int(round(max(w, h) * margin)))
    cx, cy = x + w / 2.0, y + h / 2.0
    return int(round(cx - side / 2.0)), int(round(cy - side / 2.0)), side


def clip_box(box, width: int, height: int) -> tuple:
    """Integer (x, y, w, h) of the part of `box` inside a width x height image; ValueError if none is."""
    x, y, w, h = _box_xywh(box)
    x0, y0 = max(0.0, x), max(0.0, y)
    x1, y1 = min(float(width), x + w), min(float(height), y + h)
    if x1 - x0 < 1.0 or y1 - y0 < 1.0:
        raise ValueError(f'box {(x, y, w, h)} lies outside the {width}x{height} image')
    ix0, iy0 = int(x0), int(y0)
    return ix0, iy0, max(1, min(width, int(round(x1))) - ix0), max(1, min(height, int(round(y1))) - iy0)


def _span(lo: int, hi: int, origin: int, scale: float, size: int) -> tuple:
    """Output pixels [a, b) (at least one) that the source span [lo, hi) covers in a crop at `origin`."""
    a = min(max(int(round((lo - origin) * scale)), 0), size - 1)
    b = min(max(int(round((hi - origin) * scale)), a + 1), size)
    return a, b


def crop_face(image: np.ndarray, box, size: int = DEFAULT_SIZE, margin: float = DEFAULT_MARGIN) -> np.ndarray:
    """uint8 (size, size) gray crop of the face in `box` ((x, y, w, h) pixels or a FaceBox).

    Raises ValueError for a non-uint8 or oddly shaped image, a degenerate box, a box that does not
    overlap the image at all (there is no face to crop then), or one far larger than the image.
    """
    image = _uint8_pixels(image)          # gray only the patch below: converting the whole frame per face
    if image.size == 0:                   # cost more than the model (profiled in emotion_live, issue 13)
        raise ValueError('empty image')
    ih, iw = image.shape[:2]
    x, y, w, h = _box_xywh(box)
    if x >= iw or y >= ih or x + w <= 0 or y + h <= 0:
        raise ValueError(f'box {(x, y, w, h)} lies outside the {iw}x{ih} image')
    if max(w, h) * margin > MAX_BOX_FACTOR * max(iw, ih):
        raise ValueError(f'box {w:g}x{h:g} is far larger than the {iw}x{ih} image (no face box)')
    x0, y0, side = crop_square((x, y, w, h), margin)
    x1, y1 = x0 + side, y0 + side
    patch = image[max(y0, 0):min(y1, ih), max(x0, 0):min(x1, iw)]
    if patch.size == 0:
        raise ValueError(f'box {(x, y, w, h)} lies outside the {iw}x{ih} image')
    patch = as_gray(patch)
    pad = (max(0, -y0), max(0, y1 - ih), max(0, -x0), max(0, x1 - iw))
    if any(pad) and side * side > MAX_PADDED_PIXELS:
        # Scale the visible part first and pad at output size: same picture, bounded memory.
        scale = size / side
        ox0, ox1 = _span(max(x0, 0), min(x1, iw), x0, scale, size)
        oy0, oy1 = _span(max(y0, 0), min(y1, ih), y0, scale, size)
        small = cv2.resize(patch, (ox1 - ox0, oy1 - oy0), interpolation=cv2.INTER_AREA)
        out = cv2.copyMakeBorder(small, oy0, size - oy1, ox0, size - ox1, borderType=cv2.BORDER_REPLICATE)
        return np.ascontiguousarray(out)
    if any(pad):
        patch = cv2.copyMakeBorder(patch, *pad, borderType=cv2.BORDER_REPLICATE)
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return np.ascontiguousarray(cv2.resize(patch, (size, size), interpolation=interp))
