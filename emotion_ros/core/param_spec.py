"""Declarative parameter specs: one place for each parameter's default, description and validation.

ROS-free so the same rules validate values from a ROS parameter file, a launch file or the command line.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence


class ParameterError(ValueError):
    """A parameter value was rejected; the message says which parameter and why."""


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: Any
    description: str
    min: Optional[float] = None
    max: Optional[float] = None
    choices: Optional[Sequence[Any]] = None
    check: Optional[Callable[[Any], Optional[str]]] = None
    read_only: bool = False
    also_accepts: tuple = ()  # other types converted to the default's type (e.g. source:=0 for a webcam)
    # How a runtime change takes effect: None = the node reads the value at each use; else the name of a node
    # method called with the new value once accepted (it may raise ValueError to refuse). read_only = it cannot.
    on_change: Optional[str] = None
    # A secret (an access token) taken from the start-up value like any other, but write-only: the parameter
    # services and /parameter_events, which anyone on the DDS domain can read, only ever see the default.
    secret: bool = False

    def __post_init__(self):
        if self.read_only and self.on_change:
            raise ValueError(f'{self.name}: a read-only parameter has no on_change')
        if self.secret and not self.read_only:
            raise ValueError(f'{self.name}: a secret parameter is read-only (set at start)')

    def runtime(self) -> str:
        """How a change at runtime behaves, in words (for `ros2 param describe` and docs/parameters.md)."""
        if self.secret:
            return f'read-only (set at start), write-only (reads back as {self.default!r})'
        if self.read_only:
            return 'read-only (set at start)'
        return 'applies at once'

    @property
    def type(self) -> type:
        return type(self.default)

    def constraints(self) -> str:
        parts = []
        if self.min is not None or self.max is not None:
            parts.append(f'range [{self.min if self.min is not None else "-inf"}, '
                         f'{self.max if self.max is not None else "inf"}]')
        if self.choices is not None:
            parts.append('one of ' + ', '.join(repr(c) for c in self.choices))
        return '; '.join(parts)

    def reason_invalid(self, value: Any) -> Optional[str]:
        """None if `value` is acceptable, else a one-line reason."""
        expected = self.type
        value = self.coerce(value)
        if expected is not type(None) and not isinstance(value, expected):
            return f'{self.name}: expected {expected.__name__}, got {type(value).__name__} {value!r}'
        if isinstance(value, float) and not math.isfinite(value):
            return f'{self.name}: {value!r} is not a finite number'
        if self.min is not None and value < self.min:
            return f'{self.name}: {value!r} is below the minimum {self.min}'
        if self.max is not None and value > self.max:
            return f'{self.name}: {value!r} is above the maximum {self.max}'
        if self.choices is not None and value not in self.choices:
            return f'{self.name}: {value!r} is not one of {", ".join(repr(c) for c in self.choices)}'
        if self.check is not None:
            reason = self.check(value)
            if reason:
                return f'{self.name}: {reason}'
        return None

    def coerce(self, value: Any) -> Any:
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if self.also_accepts and isinstance(value, self.also_accepts) and not isinstance(value, bool):
            return self.type(value)
        return value


def validate_all(specs: Sequence[ParamSpec], values: dict) -> dict:
    """Validated copy of `values` (defaults filled in); ParameterError listing every bad value."""
    out, reasons = {}, []
    by_name = {s.name: s for s in specs}
    for name in values:
        if name not in by_name:
            reasons.append(f'{name}: unknown parameter (known: {", ".join(sorted(by_name))})')
    for spec in specs:
        value = values.get(spec.name, spec.default)
        reason = spec.reason_invalid(value)
        if reason:
            reasons.append(reason)
        else:
            out[spec.name] = spec.coerce(value)
    if reasons:
        raise ParameterError('; '.join(reasons))
    return out
