"""Expression label -> Hue light state, from `config/hue_colors.yaml`.

Validated once at start so a typo in the colour file is a clear start error, not a 400 from the bridge
in the middle of a demo.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

MAX_TRANSITION_S = 60.0


class ColorConfigError(ValueError):
    """The colour file is unreadable or a value in it is invalid; the message names the entry."""


@dataclass(frozen=True)
class LightState:
    """One light state as the Hue v1 API takes it; `brightness` in percent, 0 = off."""
    brightness: float
    transition_s: float
    xy: Optional[Tuple[float, float]] = None
    hue: Optional[int] = None
    sat: Optional[int] = None

    @property
    def on(self) -> bool:
        return self.brightness > 0

    @property
    def transitiontime(self) -> int:
        """Deciseconds, the unit of the v1 API."""
        return int(round(self.transition_s * 10))

    def command(self) -> Dict[str, Any]:
        """Body of `PUT .../lights/<id>/state` or `.../groups/<id>/action`."""
        body: Dict[str, Any] = {'on': self.on}
        if self.on:
            body['bri'] = max(1, min(254, int(round(self.brightness * 2.54))))
            if self.xy is not None:
                body['xy'] = [round(self.xy[0], 4), round(self.xy[1], 4)]
            else:
                body['hue'], body['sat'] = self.hue, self.sat
        body['transitiontime'] = self.transitiontime
        return body


    @property
    def brightness_pct(self) -> float:
        """Brightness as v2 takes it (percent, > 0 when on; the v1 minimum bri 1 is 0.39 %)."""
        return round(max(100 / 254, min(100.0, self.brightness)), 2)

    def color_xy(self) -> Optional[Tuple[float, float]]:
        """The colour as CIE xy (v2 has no hue/sat: converted), None when off."""
        if not self.on:
            return None
        if self.xy is not None:
            return (round(self.xy[0], 4), round(self.xy[1], 4))
        return hs_to_xy(self.hue, self.sat)

    def describe(self) -> str:
        """'on 80 % xy (0.675, 0.322) in 0.5 s' (API-neutral, for log lines)."""
        if not self.on:
            return f'off in {self.transition_s:g} s'
        x, y = self.color_xy()
        return f'on {self.brightness:g} % xy ({x:g}, {y:g}) in {self.transition_s:g} s'

    def v2_body(self) -> Dict[str, Any]:
        """Body of `PUT /clip/v2/resource/light/<id>` or `grouped_light/<id>`."""
        body: Dict[str, Any] = {'on': {'on': self.on}}
        if self.on:
            x, y = self.color_xy()
            body['dimming'] = {'brightness': self.brightness_pct}
            body['color'] = {'xy': {'x': x, 'y': y}}
        body['dynamics'] = {'duration': int(round(self.transition_s * 1000))}
        return body


def hs_to_xy(hue: int, sat: int) -> Tuple[float, float]:
    """v1 hue (0-65535) / sat (0-254) at full value -> CIE xy, through sRGB with Philips' wide-gamut matrix."""
    import colorsys
    rgb = colorsys.hsv_to_rgb((hue % 65536) / 65536.0, min(sat, 254) / 254.0, 1.0)
    r, g, b = (((c + 0.055) / 1.055) ** 2.4 if c > 0.04045 else c / 12.92 for c in rgb)
    X = r * 0.664511 + g * 0.154324 + b * 0.162028
    Y = r * 0.283881 + g * 0.668433 + b * 0.047685
    Z = r * 0.000088 + g * 0.072310 + b * 0.986039
    total = X + Y + Z
    if total <= 0:
        return (0.3227, 0.329)
    return (round(X / total, 4), round(Y / total, 4))


@dataclass(frozen=True)
class ColorTable:
    states: Mapping[str, LightState]
    default: LightState

    def lookup(self, label: str) -> LightState:
        return self.states.get(normalize_label(label), self.default)

    def knows(self, label: str) -> bool:
        return normalize_label(label) in self.states


def normalize_label(label: str) -> str:
    return str(label).strip().lower()


def _number(entry: Mapping, key: str, where: str, lo: float, hi: float, required: bool = True) -> Optional[float]:
    if key not in entry:
        if required:
            raise ColorConfigError(f'{where}: missing "{key}"')
        return None
    value = entry[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ColorConfigError(f'{where}: "{key}" must be a number, got {value!r}')
    if not lo <= value <= hi:
        raise ColorConfigError(f'{where}: "{key}" = {value!r} is outside [{lo}, {hi}]')
    return float(value)


def parse_state(entry: Any, where: str) -> LightState:
    if not isinstance(entry, Mapping):
        raise ColorConfigError(f'{where}: expected a mapping with brightness, transition_s and xy or hue/sat, '
                               f'got {entry!r}')
    unknown = set(entry) - {'xy', 'hue', 'sat', 'brightness', 'transition_s'}
    if unknown:
        raise ColorConfigError(f'{where}: unknown key(s) {", ".join(sorted(map(str, unknown)))} '
                               '(allowed: xy, hue, sat, brightness, transition_s)')
    brightness = _number(entry, 'brightness', where, 0, 100)
    transition_s = _number(entry, 'transition_s', where, 0, MAX_TRANSITION_S)
    has_xy, has_hs = 'xy' in entry, ('hue' in entry or 'sat' in entry)
    if has_xy and has_hs:
        raise ColorConfigError(f'{where}: give the colour either as xy or as hue/sat, not both')
    if has_xy:
        xy = entry['xy']
        if (not isinstance(xy, (list, tuple)) or len(xy) != 2
                or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1 for v in xy)):
            raise ColorConfigError(f'{where}: "xy" must be two numbers in [0, 1] (CIE 1931), got {xy!r}')
        return LightState(brightness, transition_s, xy=(float(xy[0]), float(xy[1])))
    if has_hs:
        hue = _number(entry, 'hue', where, 0, 65535)
        sat = _number(entry, 'sat', where, 0, 254)
        if hue != int(hue) or sat != int(sat):
            raise ColorConfigError(f'{where}: "hue" and "sat" must be whole numbers')
        return LightState(brightness, transition_s, hue=int(hue), sat=int(sat))
    if brightness == 0:
        return LightState(0.0, transition_s)
    raise ColorConfigError(f'{where}: no colour: give "xy: [x, y]" or "hue" (0-65535) and "sat" (0-254)')


def parse_colors(data: Any, source: str = 'colour table') -> ColorTable:
    if not isinstance(data, Mapping) or 'default' not in data or 'labels' not in data:
        raise ColorConfigError(f'{source}: expected top-level keys "default" and "labels"')
    unknown = set(data) - {'default', 'labels'}
    if unknown:
        raise ColorConfigError(f'{source}: unknown top-level key(s) {", ".join(sorted(map(str, unknown)))}')
    default = parse_state(data['default'], f'{source}: default')
    labels = data['labels']
    if not isinstance(labels, Mapping):
        raise ColorConfigError(f'{source}: "labels" must map label names to states')
    states = {}
    for label, entry in labels.items():
        key = normalize_label(label)
        if not key:
            raise ColorConfigError(f'{source}: empty label name')
        if key in states:
            raise ColorConfigError(f'{source}: label "{key}" given twice')
        states[key] = parse_state(entry, f'{source}: labels.{key}')
    return ColorTable(states, default)


MAX_COLOR_FILE_BYTES = 1024 * 1024


def load_colors(path) -> ColorTable:
    """The table in `path`: a small regular file (FIFOs, devices and huge files are refused before reading)."""
    import yaml
    from emotion_ros.core.hue.credentials import read_regular_file
    path = Path(path)
    try:
        raw = read_regular_file(path, MAX_COLOR_FILE_BYTES, 'colour file')
        if raw is None:
            raise ColorConfigError(f'cannot read colour file {path}: No such file or directory')
        data = yaml.safe_load(raw.decode('utf-8'))
    except OSError as exc:
        raise ColorConfigError(str(exc) if not getattr(exc, 'strerror', None)
                               else f'cannot read colour file {path}: {exc.strerror}') from exc
    except UnicodeDecodeError:
        raise ColorConfigError(f'colour file {path} is not UTF-8 text') from None
    except RecursionError:
        raise ColorConfigError(f'colour file {path} is nested too deeply') from None
    except yaml.YAMLError as exc:
        raise ColorConfigError(f'colour file {path} is not valid YAML: {exc}') from exc
    return parse_colors(data, str(path))
