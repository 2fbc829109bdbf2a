"""Stable ids for detected faces across frames: IoU matching with hysteresis.

Per-track smoothing of emotion scores downstream is only as good as these ids, so a face must keep its
id when the detector misses it for a few frames, and a one-frame false detection must not use up ids.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from emotion_ros.core.faces.detection import FaceBox


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every (x, y, w, h) row of `a` against every row of `b`."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, :2] + a[:, None, 2:], b[None, :, :2] + b[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    union = np.prod(a[:, 2:], axis=1)[:, None] + np.prod(b[:, 2:], axis=1)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


@dataclass
class _Track:
    box: np.ndarray
    velocity: np.ndarray
    hits: int = 1
    missed: int = 0
    track_id: str = ''

    def predicted(self) -> np.ndarray:
        """Where the box should be now: last box moved by the per-frame velocity for every frame since."""
        box = self.box + self.velocity * (self.missed + 1)
        box[2:] = np.maximum(box[2:], 1.0)
        return box


class FaceTracker:
    """Assigns each detected face a track id; ids are decimal strings, never reused by this tracker.

    Rule, applied once per `update` (one call per frame):
    1. Every live track predicts its box (last box plus a smoothed per-frame velocity times the frames
       since it was seen); boxes and predictions are paired one-to-one by maximum total IoU (Hungarian),
       and a pair counts only with IoU >= `iou_threshold`.
    2. A matched track takes the new box; an unmatched box starts a tentative track.
    3. A tentative track is confirmed, and only then given the next id, once it has been matched in
       `min_hits` consecutive frames; a tentative track that misses a frame is dropped. So a spurious
       one-frame box never consumes an id; its face is returned with id '' (untracked) meanwhile.
    4. A confirmed track that finds no box coasts on its prediction for up to `max_missed` frames and
       keeps its id if the face reappears; after that it is deleted and its id retired.
    5. Right after construction or `reset()`, boxes in the first frame are confirmed at once (there is no
       history to doubt them), so a steady scene has ids from its first frame.
    """

    def __init__(self, iou_threshold: float = 0.3, max_missed: int = 5, min_hits: int = 2):
        if not 0.0 < iou_threshold <= 1.0:
            raise ValueError(f'iou_threshold must be in (0, 1], got {iou_threshold!r}')
        if int(max_missed) != max_missed or max_missed < 0:
            raise ValueError(f'max_missed must be a non-negative integer, got {max_missed!r}')
        if int(min_hits) != min_hits or min_hits < 1:
            raise ValueError(f'min_hits must be a positive integer, got {min_hits!r}')
        self.iou_threshold = float(iou_threshold)
        self.max_missed = int(max_missed)
        self.min_hits = int(min_hits)
        self._next_id = 1
        self.reset()

    def reset(self) -> None:
        """Forget all tracks (e.g. the camera source changed); ids already handed out stay retired."""
        self._tracks: list[_Track] = []
        self._first_frame = True

    def update(self, boxes: list[FaceBox]) -> list[str]:
        """Track ids for `boxes`, in the same order ('' for a face not yet confirmed as a track)."""
        new = np.array([[b.x, b.y, b.w, b.h] for b in boxes], dtype=np.float64).reshape(-1, 4)
        track_of_box = self._match(new)
        matched_tracks = set(track_of_box.values())
        survivors = []
        for t, track in enumerate(self._tracks):
            if t in matched_tracks:
                survivors.append(track)
            elif track.track_id and track.missed < self.max_missed:
                track.missed += 1
                survivors.append(track)
        ids = []
        for i, box in enumerate(new):
            if i in track_of_box:
                track = self._tracks[track_of_box[i]]
                step = (box - track.box) / (track.missed + 1)
                track.velocity = step if track.hits == 1 else 0.5 * track.velocity + 0.5 * step
                track.box, track.missed, track.hits = box, 0, track.hits + 1
            else:
                track = _Track(box=box, velocity=np.zeros(4))
                survivors.append(track)
            if not track.track_id and (track.hits >= self.min_hits or self._first_frame):
                track.track_id = str(self._next_id)
                self._next_id += 1
            ids.append(track.track_id)
        self._tracks = survivors
        self._first_frame = self._first_frame and not len(new)
        return ids

    def _match(self, new: np.ndarray) -> dict:
        """box index -> track index for pairs with IoU >= threshold, maximising the total IoU."""
        if not len(new) or not self._tracks:
            return {}
        iou = iou_matrix(new, np.array([t.predicted() for t in self._tracks]))
        iou[iou < self.iou_threshold] = 0.0
        rows, cols = linear_sum_assignment(-iou)
        return {int(r): int(c) for r, c in zip(rows, cols) if iou[r, c] > 0.0}
