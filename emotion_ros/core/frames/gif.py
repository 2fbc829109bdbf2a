"""A small animated GIF of a run (what `make demo` leaves behind), in bounded memory whatever the run's length.

Frames are downscaled and decimated as they come: once `max_frames` are kept, every other one is dropped and
only every 2nd (then 4th, ...) new frame is taken, so a long run still gives an evenly spaced clip.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import cv2
import numpy as np


class GifClip:
    def __init__(self, width: int = 320, max_frames: int = 48, source_fps: float = 30.0, every: int = 3):
        self.width, self.max_frames, self.source_fps = width, max_frames, source_fps
        self.every = max(1, every)
        self.frames: List[np.ndarray] = []
        self.stamps: List[float] = []
        self._seen = 0

    def add(self, bgr: np.ndarray, stamp_s: Optional[float] = None) -> None:
        """One frame of the run; with stamps the GIF plays at the run's real pace whatever the source rate."""
        self._seen += 1
        if (self._seen - 1) % self.every:
            return
        h, w = bgr.shape[:2]
        scale = min(1.0, self.width / float(w))
        small = cv2.resize(bgr, (max(1, int(w * scale)), max(1, int(h * scale))), interpolation=cv2.INTER_AREA)
        self.frames.append(cv2.cvtColor(small, cv2.COLOR_BGR2RGB))
        self.stamps.append(stamp_s)
        if len(self.frames) >= self.max_frames:
            self.frames, self.stamps = self.frames[::2], self.stamps[::2]
            self.every *= 2

    def save(self, path) -> Path:
        """Write the GIF (playback at the source's pace); ValueError when no frame was added."""
        from PIL import Image
        if not self.frames:
            raise ValueError('no frames to write')
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        images = [Image.fromarray(f).quantize(colors=128, method=Image.Quantize.MEDIANCUT) for f in self.frames]
        span = (self.stamps[-1] - self.stamps[0]) if len(self.stamps) > 1 and None not in self.stamps else 0.0
        if span > 0:
            duration_ms = int(round(1000.0 * span / (len(self.frames) - 1)))
        else:
            duration_ms = int(round(1000.0 * self.every / max(1e-3, self.source_fps)))
        duration_ms = max(20, duration_ms)  # browsers play faster GIF frames at 100 ms
        tmp = path.with_name(path.name + '.part')
        images[0].save(tmp, format='GIF', save_all=True, append_images=images[1:], duration=duration_ms, loop=0,
                       optimize=True)
        tmp.replace(path)
        return path
