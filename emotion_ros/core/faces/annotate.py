"""Draw faces and their expressions onto a frame (for rqt_image_view / rviz2)."""
from __future__ import annotations

from typing import Sequence, Tuple

import cv2
import numpy as np

LABEL_COLORS = {  # BGR
    'happy': (0, 200, 255), 'surprise': (255, 200, 0), 'neutral': (200, 200, 200), 'sad': (255, 80, 0),
    'angry': (0, 0, 255), 'fear': (200, 0, 200), 'disgust': (0, 160, 0), 'contempt': (80, 120, 160),
}


def draw_faces(image: np.ndarray, faces: Sequence[Tuple[Tuple[int, int, int, int], str, str, float]]) -> np.ndarray:
    """Copy of `image` with a box and "id label score" per face: faces = [((x, y, w, h), id, label, score)]."""
    out = image.copy()
    scale = max(0.4, min(out.shape[:2]) / 700.0)
    thick = max(1, int(round(scale * 2)))
    for (x, y, w, h), track_id, label, score in faces:
        color = LABEL_COLORS.get(label, (255, 255, 255))
        cv2.rectangle(out, (int(x), int(y)), (int(x + w), int(y + h)), color, thick)
        text = f'{("#" + track_id + " ") if track_id else ""}{label} {score:.2f}'
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        ty = int(y) - 4 if y - th - 6 > 0 else int(y + h) + th + 4
        cv2.rectangle(out, (int(x), ty - th - 2), (int(x) + tw + 2, ty + base), color, -1)
        cv2.putText(out, text, (int(x) + 1, ty), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick, cv2.LINE_AA)
    return out
