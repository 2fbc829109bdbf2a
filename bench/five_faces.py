"""A 640x480 clip with five real faces: scikit-image's astronaut portrait (a photograph that ships in its
wheel), cropped around the face and tiled 3 + 2, each tile drifting a few pixels per frame so the
detector and tracker see motion. Written as JPEG frames to a folder for camera_node's folder source.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

WIDTH, HEIGHT = 640, 480
FACE_REGION = (120, 15, 220, 240)      # x, y, w, h in the 512x512 astronaut photo: face with hair and chin
TILE = (176, 192)
SLOTS = ((24, 24), (232, 24), (440, 24), (128, 264), (336, 264))


def write_frames(folder: Path, frames: int = 60) -> Path:
    from skimage import data
    photo = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    x, y, w, h = FACE_REGION
    tile = cv2.resize(photo[y:y + h, x:x + w], TILE, interpolation=cv2.INTER_AREA)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(frames):
        frame = np.full((HEIGHT, WIDTH, 3), 110, np.uint8)
        for k, (sx, sy) in enumerate(SLOTS):
            phase = 2 * np.pi * (i / frames + k / len(SLOTS))
            dx, dy = int(round(10 * np.sin(phase))), int(round(6 * np.cos(phase)))
            tx, ty = min(max(sx + dx, 0), WIDTH - TILE[0]), min(max(sy + dy, 0), HEIGHT - TILE[1])
            frame[ty:ty + TILE[1], tx:tx + TILE[0]] = tile
        cv2.imwrite(str(folder / f'frame_{i:04d}.jpg'), frame, [cv2.IMWRITE_JPEG_QUALITY, 92])
    return folder
