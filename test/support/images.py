"""Test pictures: the astronaut portrait (one clear face, in scikit-image) and every frame of a clip."""
from __future__ import annotations

from pathlib import Path
from typing import List

import cv2
import numpy as np


def astronaut_bgr(width: int = 640, height: int = 480, shift: int = 0) -> np.ndarray:
    """The astronaut as BGR at a camera's size (512 x 512 is its own), rolled `shift` pixels to the right."""
    from skimage import data
    img = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    if img.shape[:2] != (height, width):
        img = cv2.resize(img, (width, height))
    return np.ascontiguousarray(np.roll(img, shift, axis=1)) if shift else img


def video_frames(path: Path) -> List[np.ndarray]:
    """Every frame OpenCV decodes from the file, in order."""
    capture = cv2.VideoCapture(str(path))
    frames = []
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                return frames
            frames.append(frame)
    finally:
        capture.release()
