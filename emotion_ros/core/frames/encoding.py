"""Convert raw image buffers (sensor_msgs/Image fields) to and from BGR uint8 arrays with numpy only.

Used where ROS 2's cv_bridge is absent. Every failure raises ImageDecodeError with a one-line reason.
"""
from __future__ import annotations

import cv2
import numpy as np

# encoding -> (channels, dtype, conversion to BGR)
_LAYOUTS = {
    'bgr8': (3, np.uint8), 'rgb8': (3, np.uint8), 'bgra8': (4, np.uint8), 'rgba8': (4, np.uint8),
    'mono8': (1, np.uint8), '8UC1': (1, np.uint8), '8UC3': (3, np.uint8), '8UC4': (4, np.uint8),
    'mono16': (1, np.uint16), '16UC1': (1, np.uint16), 'bgr16': (3, np.uint16), 'rgb16': (3, np.uint16),
    'bgra16': (4, np.uint16), 'rgba16': (4, np.uint16),
}
SUPPORTED_ENCODINGS = tuple(sorted(_LAYOUTS))


class ImageDecodeError(ValueError):
    """The buffer cannot be read as an image; the message says why."""


def to_bgr8(encoding: str, height: int, width: int, step: int, data, is_bigendian: bool = False) -> np.ndarray:
    """Return an H×W×3 uint8 BGR view/copy of the buffer; 16-bit data is scaled down to 8 bits."""
    if encoding not in _LAYOUTS:
        raise ImageDecodeError(f'unsupported encoding {encoding!r} (supported: {", ".join(SUPPORTED_ENCODINGS)})')
    channels, dtype = _LAYOUTS[encoding]
    if height <= 0 or width <= 0:
        raise ImageDecodeError(f'empty image {width}x{height}')
    itemsize = np.dtype(dtype).itemsize
    row_bytes = width * channels * itemsize
    if step < row_bytes:
        raise ImageDecodeError(f'step {step} is smaller than width*channels*bytes = {row_bytes}')
    buf = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data.view(np.uint8).ravel()
    if buf.size < step * (height - 1) + row_bytes:
        raise ImageDecodeError(f'truncated data: {buf.size} bytes for {height} rows of step {step}')
    rows = np.lib.stride_tricks.as_strided(buf, shape=(height, row_bytes), strides=(step, 1))
    pixels = rows.view(np.dtype(dtype).newbyteorder('>' if is_bigendian else '<')) if itemsize > 1 else rows
    img = pixels.reshape(height, width, channels)
    if itemsize > 1:
        img = (img >> 8).astype(np.uint8)
    if channels == 1:
        return np.repeat(img, 3, axis=2)
    if encoding.startswith('rgb'):
        img = img[:, :, 2::-1] if channels == 3 else img[:, :, [2, 1, 0]]
    elif channels == 4:
        img = img[:, :, :3]
    return np.ascontiguousarray(img)


def bgr8_bytes(image: np.ndarray) -> tuple:
    """(height, width, step, bytes) of a BGR uint8 image for a bgr8 sensor_msgs/Image."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ImageDecodeError(f'expected H×W×3 uint8, got {image.shape} {image.dtype}')
    image = np.ascontiguousarray(image)
    h, w = image.shape[:2]
    return h, w, w * 3, image.tobytes()


def as_bgr(image: np.ndarray) -> np.ndarray:
    """Contiguous uint8 BGR from gray (H,W) / (H,W,1), BGR (H,W,3) or BGRA (H,W,4)."""
    image = _uint8_pixels(image)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return np.ascontiguousarray(image)


def as_gray(image: np.ndarray) -> np.ndarray:
    """uint8 gray from gray (H,W) / (H,W,1), BGR (H,W,3) or BGRA (H,W,4)."""
    image = _uint8_pixels(image)
    if image.ndim == 2:
        return image
    return cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY if image.shape[2] == 4 else cv2.COLOR_BGR2GRAY)


def _uint8_pixels(image: np.ndarray) -> np.ndarray:
    """The image as (H,W) or (H,W,3|4) uint8; ValueError naming the dtype or shape otherwise."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f'image must be uint8, got {image.dtype}')
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4)):
        return image
    raise ValueError(f'image must be gray (H,W) or BGR (H,W,3) / BGRA (H,W,4), got shape {image.shape}')
