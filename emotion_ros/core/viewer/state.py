"""The state the viewer's page reads: the newest faces, a timeline per face id, the graph's diagnostics and
the Hue node's latched state, always as valid, bounded JSON.

Every value is cleaned on the way in (`clean`): a non-finite number becomes null (counted, reported once per
interval), texts and lists are capped, anything else becomes its type name. So a bad message, latched or not,
cannot make a message the page fails to parse. Every table has a cap and an eviction by age:

| table | cap | evicted |
|---|---|---|
| faces of the newest frame | `MAX_FACES` | replaced by the next frame |
| timelines (per face id) | `MAX_TRACKS` ids, `MAX_POINTS` points each (one per `timeline_s / MAX_POINTS` s) | points older than `timeline_s` before the newest stamp (or > 5 s after it: a restarted clock); over the cap the id seen longest ago |
| diagnostics (per status name) | `MAX_DIAGNOSTICS` names | not received for `DIAGNOSTICS_MAX_AGE_S`; over the cap the one received longest ago |
| Hue state | one, latched | replaced by the next valid one |
"""
from __future__ import annotations

import json
import math
import time
from collections import deque
from typing import Callable, Dict, List, Optional

MAX_FACES = 32           # = MAX_TRACKS: every face in view keeps its timeline
MAX_TRACKS = 32
MAX_POINTS = 1000
MAX_DIAGNOSTICS = 128
DIAGNOSTICS_MAX_AGE_S = 120.0
MAX_LIST = 64            # entries of any list (labels, scores, targets)
MAX_MAPPING = 32         # entries of any mapping (diagnostic values)
MAX_TEXT = 512           # characters of any text
MAX_VALUES, MAX_VALUE_KEY, MAX_VALUE_TEXT = 16, 64, 128   # per diagnostic status: at most ~3 kB
MAX_DEPTH = 4
RESTARTED_CLOCK_S = 5.0


def dumps(obj) -> str:
    """Strict JSON (a NaN that got this far is a bug: ValueError, never a message the page cannot parse)."""
    return json.dumps(obj, allow_nan=False, separators=(',', ':'))


def finite(value) -> Optional[float]:
    """`value` as a finite float, or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        value = float(value)
    except OverflowError:  # an int beyond float
        return None
    return value if math.isfinite(value) else None


class Cleaner:
    """Turns any value into one `dumps` accepts, within the caps; counts the non-finite numbers it replaced."""

    def __init__(self):
        self.non_finite = 0

    def __call__(self, value, depth: int = 0, text: int = MAX_TEXT):
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, int):
            return value if abs(value) < 2 ** 53 else self.number(value)
        if isinstance(value, float):
            return self.number(value)
        if isinstance(value, str):
            return value[:text]
        if isinstance(value, (bytes, bytearray)):
            return bytes(value[:text]).decode('utf-8', 'replace')
        if depth >= MAX_DEPTH:
            return None
        if isinstance(value, dict):
            return {self.key(k): self(v, depth + 1) for k, v in list(value.items())[:MAX_MAPPING]}
        if isinstance(value, (list, tuple, deque)):
            return [self(v, depth + 1) for v in list(value)[:MAX_LIST]]
        return type(value).__name__

    def number(self, value) -> Optional[float]:
        out = finite(value)
        if out is None and value is not None:
            self.non_finite += 1
        return out

    @staticmethod
    def key(value) -> str:
        return (value if isinstance(value, str) else str(value))[:MAX_TEXT // 4]

    def text(self, value, limit: int = MAX_TEXT // 4) -> str:
        return value[:limit] if isinstance(value, str) else ''


def _items(value, limit: int = MAX_LIST) -> list:
    """The first `limit` entries of a list or tuple; anything else (a number, a text, a mapping) is no list."""
    return list(value[:limit]) if isinstance(value, (list, tuple)) else []


def _round(value: Optional[float], digits: int = 3) -> Optional[float]:
    return None if value is None else round(value, digits)


class ViewerState:
    """Loop-thread only (the server calls it from its event loop). `report(kind, text)` gets a line for each
    refused or repaired input (the server throttles it)."""

    def __init__(self, timeline_s: float = 60.0, report: Callable[[str, str], None] = lambda kind, text: None,
                 clock: Callable[[], float] = time.time):
        self.timeline_s = float(timeline_s)
        self._report, self._clock = report, clock
        self._clean = Cleaner()
        self.seq = 0
        self.faces: List[dict] = []
        self.stamp = 0.0
        self.labels: List[str] = []
        self.timelines: Dict[str, deque] = {}
        self.diagnostics: Dict[str, dict] = {}   # insertion order = order received (oldest first)
        self.hue: Optional[dict] = None

    # ---------------------------------------------------------------- input

    def _note_non_finite(self, before: int, what: str) -> None:
        n = self._clean.non_finite - before
        if n:
            self._report('non-finite', f'{n} non-finite number(s) in {what} sent to the page as null '
                                       f'({self._clean.non_finite} since start)')

    def set_faces(self, stamp, faces) -> None:
        before = self._clean.non_finite
        stamp = self._clean.number(stamp)
        if stamp is None or not isinstance(faces, (list, tuple)):
            self._note_non_finite(before, 'a faces stamp')
            self._report('bad-faces', 'faces refused: no finite stamp or not a list')
            return
        if len(faces) > MAX_FACES:
            self._report('too-many-faces', f'{len(faces)} faces in one frame: showing the first {MAX_FACES}')
        cleaned = [self._face(f) for f in list(faces)[:MAX_FACES] if isinstance(f, dict)]
        self.faces, self.stamp = cleaned, stamp
        spacing = self.timeline_s / MAX_POINTS
        for f in cleaned:
            if f['labels']:
                self.labels = list(f['labels'])
            track = self.timelines.pop(f['id'], None)
            track = track if track is not None else deque(maxlen=MAX_POINTS)
            self.timelines[f['id']] = track    # re-inserted: dict order = seen longest ago first
            if not track or stamp - track[-1][0] >= spacing or stamp < track[-1][0]:
                track.append([round(stamp, 3), f['label'], _round(f['confidence']), _round(f['valence']),
                              _round(f['arousal'])])
        horizon = stamp - self.timeline_s
        for key in list(self.timelines):
            track = self.timelines[key]
            while track and (track[0][0] < horizon or track[0][0] > stamp + RESTARTED_CLOCK_S):
                track.popleft()
            if not track:
                del self.timelines[key]
        while len(self.timelines) > MAX_TRACKS:
            del self.timelines[next(iter(self.timelines))]
        self._note_non_finite(before, 'faces')
        self.seq += 1

    def _face(self, f: dict) -> dict:
        c = self._clean
        box = f.get('box')
        return {'id': c.text(f.get('id')) or '?', 'label': c.text(f.get('label')),
                'confidence': c.number(f.get('confidence')), 'valence': c.number(f.get('valence')),
                'arousal': c.number(f.get('arousal')),
                'labels': [c.text(x) for x in _items(f.get('labels'))],
                'scores': [c.number(x) for x in _items(f.get('scores'))],
                'box': [c(x) for x in list(box)[:4]] if isinstance(box, (list, tuple)) else []}

    def set_diagnostics(self, statuses) -> None:
        before = self._clean.non_finite
        now = self._clock()
        for s in _items(statuses, MAX_DIAGNOSTICS):
            if not isinstance(s, dict) or not isinstance(s.get('name'), str):
                continue
            entry = {'name': s['name'][:MAX_TEXT], 'level': self._clean(s.get('level')),
                     'message': self._clean.text(s.get('message'), MAX_TEXT),
                     'values': self._values(s.get('values')),
                     'received': now}
            self.diagnostics.pop(entry['name'], None)
            self.diagnostics[entry['name']] = entry
        self._evict_diagnostics(now)
        self._note_non_finite(before, 'diagnostics')
        self.seq += 1

    def _values(self, values) -> dict:
        if not isinstance(values, dict):
            return {}
        return {self._clean.key(k)[:MAX_VALUE_KEY]: self._clean(v, MAX_DEPTH - 1, MAX_VALUE_TEXT)
                for k, v in list(values.items())[:MAX_VALUES]}

    def _evict_diagnostics(self, now: float) -> None:
        table = self.diagnostics
        while table and (len(table) > MAX_DIAGNOSTICS
                         or now - next(iter(table.values()))['received'] > DIAGNOSTICS_MAX_AGE_S):
            del table[next(iter(table))]

    def set_hue(self, state) -> None:
        before = self._clean.non_finite
        if not isinstance(state, dict):
            self._report('bad-hue', 'Hue state refused: not a mapping')
            return
        self.hue = self._clean(state)
        self._note_non_finite(before, 'the Hue state')
        self.seq += 1

    # ---------------------------------------------------------------- output

    def state(self, viewer_stats: Optional[dict] = None) -> dict:
        self._evict_diagnostics(self._clock())
        return {'type': 'state', 'seq': self.seq, 'server_time': self._clock(), 'faces': self.faces,
                'stamp': self.stamp, 'diagnostics': list(self.diagnostics.values()), 'hue': self.hue,
                'viewer': self._clean(viewer_stats or {})}

    def hello(self) -> dict:
        return {'type': 'hello', 'timeline_s': self.timeline_s, 'labels': self.labels,
                'history': {k: list(v) for k, v in self.timelines.items()}}

    def state_json(self, viewer_stats: Optional[dict] = None) -> str:
        return dumps(self.state(viewer_stats))

    def hello_json(self) -> str:
        return dumps(self.hello())

    def api_json(self, viewer_stats: Optional[dict] = None) -> str:
        """/api/state: the state with the timelines."""
        return dumps(dict(self.state(viewer_stats), history=self.hello()['history']))
