"""Declare a node's parameters from ParamSpecs: descriptions, ranges, and validation at start and at runtime."""
from __future__ import annotations

from typing import Callable, Sequence

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.node import Node

from emotion_ros.core.log_text import untrusted
from emotion_ros.core.param_spec import ParameterError, ParamSpec, validate_all


def _descriptor(spec: ParamSpec) -> ParameterDescriptor:
    desc = ParameterDescriptor(description=spec.description, additional_constraints=spec.constraints(),
                               read_only=spec.read_only, dynamic_typing=bool(spec.also_accepts))
    if spec.type is float and (spec.min is not None or spec.max is not None):
        desc.floating_point_range = [FloatingPointRange(
            from_value=float(spec.min if spec.min is not None else -1e300),
            to_value=float(spec.max if spec.max is not None else 1e300), step=0.0)]
    elif spec.type is int and (spec.min is not None or spec.max is not None):
        desc.integer_range = [IntegerRange(
            from_value=int(spec.min if spec.min is not None else -(2 ** 62)),
            to_value=int(spec.max if spec.max is not None else 2 ** 62), step=1)]
    return desc


def _declare(node: Node, spec: ParamSpec):
    """The start-up value of `spec` (parameter file, launch, command line, else its default), declared on `node`.

    A secret is declared with its default, not the value given (`ignore_override`): the parameter services
    (`ros2 param get/dump`) and the declaration's /parameter_events message, which anyone on the DDS domain can
    read, never carry it; the node takes the value from rclpy's own overrides. An rclpy without them
    (`_parameter_overrides`) gets the ordinary declaration: visible, but never silently ignored."""
    overrides = getattr(node, '_parameter_overrides', None) if spec.secret else None
    if not isinstance(overrides, dict):
        return node.declare_parameter(spec.name, spec.default, _descriptor(spec)).value
    node.declare_parameter(spec.name, spec.default, _descriptor(spec), ignore_override=True)
    given = overrides.get(spec.name)
    return spec.default if given is None or given.value is None else given.value


def declare_params(node: Node, specs: Sequence[ParamSpec], apply_now: Callable[[], bool] = lambda: True) -> dict:
    """Declare every spec on `node` and return a dict of current values that follows accepted runtime changes.

    Raises ParameterError (all reasons at once) when a value given at start (parameter file, launch, CLI)
    is invalid. Runtime changes through the parameter services are validated the same way and rejected
    with the reason, leaving the old value in place. An accepted change of a spec with `on_change` calls
    that node method with the new value when `apply_now()` (a ManagedNode: while configured); a ValueError
    from it refuses the change with its message and restores the old value.
    """
    by_name = {s.name: s for s in specs}
    hooks = {}
    for spec in specs:
        if spec.on_change:
            hook = getattr(node, spec.on_change, None)
            if not callable(hook):
                raise TypeError(f'{type(node).__name__}: parameter {spec.name} names on_change '
                                f'{spec.on_change!r}, which is not a method of the node')
            hooks[spec.name] = hook
    declared, reasons = {}, []
    for spec in specs:
        try:
            declared[spec.name] = _declare(node, spec)
        except Exception as exc:  # rclpy raises several types for type/range violations of overrides
            reasons.append(f'{spec.name}: {exc}')
    try:
        values = validate_all([by_name[n] for n in declared], declared)
    except ParameterError as exc:
        reasons.append(str(exc))
    if reasons:
        raise ParameterError('invalid parameters: ' + '; '.join(reasons))

    def on_set(params) -> SetParametersResult:
        staged = {}
        for p in params:
            spec = by_name.get(p.name)
            if spec is None:
                continue
            reason = spec.reason_invalid(p.value)
            if reason:
                node.get_logger().warning(f'rejected parameter change: {untrusted(reason, 300)}')
                return SetParametersResult(successful=False, reason=reason)
            staged[p.name] = spec.coerce(p.value)
        old = {name: values[name] for name in staged}
        values.update(staged)
        if apply_now():
            for name, value in staged.items():
                if name in hooks and value != old[name]:
                    try:
                        hooks[name](value)
                    except ValueError as exc:
                        values.update(old)
                        reason = f'{name}: {exc}'
                        node.get_logger().warning(f'rejected parameter change: {untrusted(reason, 300)}')
                        return SetParametersResult(successful=False, reason=reason)
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(on_set)
    return values
