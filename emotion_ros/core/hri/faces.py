"""REP-155 (ROS4HRI) face semantics, ROS-free: topic-safe ids, expression names, normalised boxes, face lifetimes.

hri_publisher_node only translates these into hri_msgs; the rules live here so they are testable without DDS.
REP-155 publishes one namespace per face, /humans/faces/<id>/{roi,cropped,expression}, and the list of faces
seen in the current image on /humans/faces/tracked. Consumers (libhri, pyhri) subscribe to `tracked` and
create (or drop) their per-id subscriptions as ids appear (or disappear) there.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Tuple

import cv2
import numpy as np

from emotion_ros.core.emotion.labels import canonical_label

FACES_NS = '/humans/faces'
TRACKED_TOPIC = FACES_NS + '/tracked'

# Our canonical labels (emotion_ros.core.emotion.labels) -> hri_msgs/Expression constants (their string values).
# Labels without a REP-155 counterpart (e.g. 'contempt', or a custom model's own classes) map to '' (no
# categorical expression); valence, arousal and confidence are still published for them.
EXPRESSION_OF_LABEL = {
    'happy': 'happy',          # Expression.HAPPY
    'sad': 'sad',              # Expression.SAD
    'angry': 'angry',          # Expression.ANGRY
    'surprise': 'surprised',   # Expression.SURPRISED
    'fear': 'scared',          # Expression.SCARED
    'disgust': 'disgusted',    # Expression.DISGUSTED
    'neutral': 'neutral',      # Expression.NEUTRAL
}
UNKNOWN_EXPRESSION = ''

_LITERAL = frozenset('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789')
_MAX_TOKEN = 96   # longer escaped ids are hashed: topic names stay far below DDS's 255-character limit


def _escaped(raw: str) -> str:
    return ''.join(c if c in _LITERAL else f'_{ord(c):x}z' for c in raw)


def face_topic_id(track_id: str, prefix: str = 'f') -> str:
    """The REP-155 id of a face track: a valid ROS topic-name token, stable, and distinct for distinct track ids.

    ROS 2 name tokens are [A-Za-z0-9_] and must not start with a digit, so our tracker's decimal ids ('3')
    become 'f3' (hri_face_detect's deterministic ids look alike: 'f00003'). ASCII letters and digits stay as
    they are; every other character (the underscore too) becomes `_<hex code point>z` ('a-b' -> 'fa_2dzb',
    'a_b' -> 'fa_5fzb'), a code that decodes back, so two track ids never share a REP-155 id (the
    cf495d6 mapping cleaned 'a-b' and 'a_b_35c2229e' alike). An escaped id longer than 96 characters becomes
    `_h` + the full SHA-256 of the track id: `_h` never starts an escape (h is no hex digit), so hashed ids
    cannot meet escaped ones, and among themselves they differ unless SHA-256 collides. No form contains `__`
    (given a prefix that does not end in `_`, as hri_publisher_node's `id_prefix` check requires).
    """
    raw = str(track_id)
    token = _escaped(raw)
    if len(token) > _MAX_TOKEN:
        token = '_h' + hashlib.sha256(raw.encode('utf-8', 'surrogatepass')).hexdigest()
    return prefix + token


def face_topic(face_id: str, leaf: str) -> str:
    """/humans/faces/<id>/<leaf> for a face_topic_id."""
    return f'{FACES_NS}/{face_id}/{leaf}'


def expression_of(label: str) -> str:
    """hri_msgs/Expression.expression for one of our labels (any spelling); '' when REP-155 has none."""
    return EXPRESSION_OF_LABEL.get(canonical_label(label), UNKNOWN_EXPRESSION)


def bounded(value: float, low: float, high: float) -> float:
    """`value` clipped to [low, high]; a non-finite value (bad upstream data) becomes the in-range value nearest 0,
    so REP-155's documented ranges (confidence 0..1, valence/arousal -1..1) hold for every message."""
    v = float(value)
    if not np.isfinite(v):
        v = 0.0
    return min(high, max(low, v))


def normalised_roi(box: Tuple[float, float, float, float], width: int, height: int) -> Tuple[float, float, float, float]:
    """(xmin, ymin, xmax, ymax) in [0, 1] of a pixel box (x, y, w, h) in a width x height image.

    REP-155's NormalizedRegionOfInterest2D requires every coordinate in [0, 1]: parts of a box outside the
    image (a face at the border) are clipped, so xmin <= xmax and ymin <= ymax always hold.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f'image size must be positive, got {width}x{height}')
    x, y, w, h = (float(v) for v in box)
    if not all(np.isfinite(v) for v in (x, y, w, h)) or w < 0 or h < 0:
        raise ValueError(f'box needs finite coordinates and non-negative size, got {(x, y, w, h)}')

    def clip(v):
        return min(1.0, max(0.0, v))
    return clip(x / width), clip(y / height), clip((x + w) / width), clip((y + h) / height)


def cropped_face(image: np.ndarray, box: Tuple[float, float, float, float], size: int = 128) -> np.ndarray:
    """The face box scaled to fit a size x size image (aspect kept, centred, black borders), like hri_face_detect's
    /cropped. A box that misses the image raises ValueError."""
    h_img, w_img = image.shape[:2]
    x, y, w, h = (float(v) for v in box)
    x0, y0 = max(0, int(np.floor(x))), max(0, int(np.floor(y)))
    x1, y1 = min(w_img, int(np.ceil(x + w))), min(h_img, int(np.ceil(y + h)))
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f'box {(x, y, w, h)} is outside the {w_img}x{h_img} image')
    roi = image[y0:y1, x0:x1]
    scale = min(size / roi.shape[1], size / roi.shape[0])
    sw, sh = max(1, min(size, int(round(roi.shape[1] * scale)))), max(1, min(size, int(round(roi.shape[0] * scale))))
    scaled = cv2.resize(roi, (sw, sh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    out = np.zeros((size, size) + image.shape[2:], dtype=image.dtype)
    ox, oy = (size - sw) // 2, (size - sh) // 2
    out[oy:oy + sh, ox:ox + sw] = scaled
    return out


@dataclass
class FaceChanges:
    """What one frame changed: the ids to list on `tracked` and whose publishers to create."""
    tracked: List[str]
    appeared: List[str] = field(default_factory=list)


class FaceLifetimes:
    """Which REP-155 face ids exist, with a grace period before a lost face's topics are removed.

    `tracked` lists exactly the faces seen in the current image (as hri_face_detect does). A face that
    drops out keeps its per-id publishers for `grace_s` (seconds of the caller's clock), so a detector
    miss of a few frames does not tear down and rebuild its DDS endpoints; after that `expire` returns it
    and its publishers go. An id seen again within the grace period keeps everything it had.
    """

    def __init__(self, grace_s: float = 1.0):
        if not np.isfinite(grace_s) or grace_s < 0:
            raise ValueError(f'grace_s must be a non-negative number, got {grace_s!r}')
        self.grace_s = float(grace_s)
        self._last_seen: Dict[str, float] = {}

    @property
    def alive(self) -> List[str]:
        """Ids whose publishers exist (tracked now, or lost less than grace_s ago)."""
        return list(self._last_seen)

    def update(self, ids: Iterable[str], now: float) -> FaceChanges:
        """Record the faces of one frame seen at `now`; duplicate ids in one frame count once."""
        tracked = list(dict.fromkeys(i for i in ids if i))
        appeared = [i for i in tracked if i not in self._last_seen]
        for i in tracked:
            self._last_seen[i] = now
        return FaceChanges(tracked=tracked, appeared=appeared)

    def expire(self, now: float) -> List[str]:
        """Ids lost for longer than grace_s at `now` (forgotten here; the caller removes their topics).

        A clock that jumped back (bag loop, sim time reset) restarts the grace period rather than keeping
        faces forever or dropping them at once.
        """
        gone = []
        for i, seen in list(self._last_seen.items()):
            if seen > now:
                self._last_seen[i] = now
            elif now - seen > self.grace_s:
                gone.append(i)
                del self._last_seen[i]
        return gone

    def clear(self) -> List[str]:
        """Forget every face (node deactivated); returns the ids whose topics must go."""
        gone, self._last_seen = list(self._last_seen), {}
        return gone

