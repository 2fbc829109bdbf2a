"""Lifecycle (managed) node base: resources load on configure, processing runs only while active.

With `autostart` (default) a node configures and activates itself, so it still starts with one command;
with `autostart:=false` a lifecycle manager (or `ros2 lifecycle set`) drives the transitions.
"""
from __future__ import annotations

from typing import Sequence

from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from emotion_ros.core.param_spec import ParamSpec
from emotion_ros.nodes.node_main import StartupError
from emotion_ros.nodes.params import declare_params

AUTOSTART = ParamSpec('autostart', True, 'configure and activate at start (false: wait for lifecycle '
                      'transitions from a manager)', read_only=True)


class ManagedNode(LifecycleNode):
    SPECS: Sequence[ParamSpec] = ()

    def __init__(self, node_name: str, **node_kwargs):
        super().__init__(node_name, **node_kwargs)
        self.p = declare_params(self, tuple(self.SPECS) + (AUTOSTART,))
        self.active = False
        self.finished, self.exit_code = False, 0
        self.startup_error = ''
        self.setup()
        if self.p['autostart']:
            if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                raise StartupError(self.startup_error or 'configure failed')
            self.trigger_activate()

    def setup(self) -> None:
        """Create what lives as long as the node, whatever its state (diagnostics, logs)."""

    def configure(self) -> None:
        """Load what the node needs (model, detector, source) and create its topics; raise StartupError."""

    def cleanup(self) -> None:
        """Release what configure() created."""

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self.configure()
        except (StartupError, OSError, ValueError, RuntimeError) as exc:
            self.startup_error = str(exc)
            self.get_logger().error(f'configure failed: {exc}')
            return TransitionCallbackReturn.FAILURE
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.active = True
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.active = False
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.active = False
        self.cleanup()
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.active = False
        self.cleanup()
        return super().on_shutdown(state)
