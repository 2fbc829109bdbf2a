"""Lifecycle (managed) node base: one contract for every emotion_ros node.

    setup()       once, in __init__: what lives as long as the process (diagnostics, loggers). Not released.
    configure()   unconfigured -> inactive: load models/sources/files and create topics, timers, services.
    activate()    inactive -> active: output flows (extra work a node needs; publishers enable themselves).
    deactivate()  active -> inactive: output stops (e.g. end a running capture).
    cleanup()     inactive -> unconfigured: release non-ROS resources configure() made (files, devices).
    shutdown      any state -> finalized: cleanup, then the process ends with exit code 0 (respawn can fire).
                  SIGINT and SIGTERM take the same transition (`end`), so a node's final state is published.

What the base class does so no node can forget it:
- Every publisher, subscription, timer, service and client created from the start of configure() until
  cleanup/shutdown (with the ordinary `create_publisher`, `create_subscription`, ... calls) is owned by the
  configuration and destroyed on cleanup, shutdown, a failed configure, an error, and destroy_node. So
  `ros2 topic info -v` shows one publisher per topic after any number of cleanup -> configure cycles.
- Publishers created while configuring are lifecycle publishers: they publish only while active.
- Subscription and timer callbacks created while configuring run only while active; the node's own
  `self.active` says the same for code that needs it (services, callbacks made in setup()).
- Parameters come from `SPECS` (ParamSpec) into `self.p`; a spec's `on_change` names the node method that
  applies a runtime change while configured (configure() reads `self.p` anyway).

With `autostart` (default) a node configures and activates itself, so it starts with one command;
with `autostart:=false` a lifecycle manager (or `ros2 lifecycle set`) drives the transitions.
"""
from __future__ import annotations

import dataclasses
import inspect
import time
from typing import Any, Callable, List, Mapping, Optional, Sequence

from rclpy.duration import Duration
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.publisher import Publisher
from rclpy.service import Service
from rclpy.subscription import Subscription
from rclpy.timer import Timer

from emotion_ros.core.param_spec import ParamSpec
from emotion_ros.nodes.node_main import StartupError
from emotion_ros.nodes.params import declare_params

AUTOSTART = ParamSpec('autostart', True, 'configure and activate at start (false: wait for lifecycle '
                      'transitions from a manager)', read_only=True)

CONFIGURE_ERRORS = (StartupError, OSError, ValueError, RuntimeError)
FINAL_ACK_S = 1.0


def _with_defaults(specs: Sequence[ParamSpec], defaults: Mapping[str, Any]) -> tuple:
    unknown = sorted(set(defaults) - {s.name for s in specs})
    if unknown:
        raise ValueError(f'no such parameter: {", ".join(unknown)}')
    return tuple(dataclasses.replace(s, default=defaults[s.name]) if s.name in defaults else s for s in specs)


class ManagedNode(LifecycleNode):
    SPECS: Sequence[ParamSpec] = ()

    def __init__(self, node_name: str, param_defaults: Optional[Mapping[str, Any]] = None, **node_kwargs):
        """`param_defaults` replaces spec defaults for this instance (a runner's own choice); a value from a
        parameter file or the command line still wins over it, as over any default."""
        specs = _with_defaults(tuple(self.SPECS) + (AUTOSTART,), param_defaults or {})
        self._owning = False
        self._owned: List[Any] = []
        self.active = False
        self.configured = False
        self.finished, self.exit_code = False, 0
        self.startup_error = ''
        self._ending = ''
        super().__init__(node_name, **node_kwargs)
        self.p = declare_params(self, specs, apply_now=lambda: self.configured)
        self.setup()
        if self.p['autostart']:
            if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                raise StartupError(self.startup_error or 'configure failed')
            self.trigger_activate()

    # --- hooks for subclasses -------------------------------------------------------------------------
    def setup(self) -> None:
        """Create what lives as long as the node, whatever its state (diagnostics, logs)."""

    def configure(self) -> None:
        """Load what the node needs and create its topics; raise StartupError (or OSError/ValueError) to refuse."""

    def activate(self) -> None:
        """Called when output starts flowing (after publishers are enabled)."""

    def deactivate(self) -> None:
        """Called when output stops (before publishers are disabled)."""

    def cleanup(self) -> None:
        """Release the non-ROS resources configure() made; ROS entities are destroyed by the base class."""

    # --- ownership of ROS entities ------------------------------------------------------------------
    def _own(self, entity):
        if self._owning:
            self._owned.append(entity)
        return entity

    def create_lifecycle_publisher(self, *args, **kwargs):
        return self._own(super().create_lifecycle_publisher(*args, **kwargs))

    def create_publisher(self, *args, **kwargs) -> Publisher:
        if self._owning:
            return self.create_lifecycle_publisher(*args, **kwargs)
        return super().create_publisher(*args, **kwargs)

    def create_subscription(self, msg_type, topic, callback, *args, **kwargs) -> Subscription:
        if self._owning:
            callback = self._when_active(callback)
        return self._own(super().create_subscription(msg_type, topic, callback, *args, **kwargs))

    def create_timer(self, timer_period_sec, callback, *args, **kwargs) -> Timer:
        if self._owning and callback is not None:
            callback = self._when_active(callback, args=0)
        return self._own(super().create_timer(timer_period_sec, callback, *args, **kwargs))

    def create_service(self, *args, **kwargs) -> Service:
        return self._own(super().create_service(*args, **kwargs))

    def create_client(self, *args, **kwargs):
        return self._own(super().create_client(*args, **kwargs))

    def _disown(self, entity) -> None:
        try:
            self._owned.remove(entity)
        except ValueError:
            pass

    def destroy_publisher(self, publisher) -> bool:
        self._disown(publisher)
        return super().destroy_publisher(publisher)

    def destroy_subscription(self, subscription) -> bool:
        self._disown(subscription)
        return super().destroy_subscription(subscription)

    def destroy_timer(self, timer) -> bool:
        self._disown(timer)
        return super().destroy_timer(timer)

    def destroy_service(self, service) -> bool:
        self._disown(service)
        return super().destroy_service(service)

    def destroy_client(self, client) -> bool:
        self._disown(client)
        return super().destroy_client(client)

    def _when_active(self, callback, args: int = 1):
        """Gate a callback taking `args` positional arguments on `self.active`; other signatures stay as they are."""
        if inspect.iscoroutinefunction(callback):
            return callback
        try:
            inspect.signature(callback).bind(*([object()] * args))
        except (TypeError, ValueError):
            return callback

        def gated(*received):
            if self.active:
                return callback(*received)
        if args == 0:
            return lambda: gated()
        return lambda msg: gated(msg)

    def _release(self) -> None:
        """Run the node's cleanup() and destroy every owned entity (newest first); safe to call twice."""
        self.active = False
        self.configured = False
        try:
            self.cleanup()
        finally:
            self._owning = False
            owned, self._owned = self._owned, []
            self._wait_for_acks([e for e in owned if isinstance(e, Publisher)])
            for entity in reversed(owned):
                if isinstance(entity, Publisher):
                    self.destroy_lifecycle_publisher(entity)
                elif isinstance(entity, Subscription):
                    self.destroy_subscription(entity)
                elif isinstance(entity, Timer):
                    self.destroy_timer(entity)
                elif isinstance(entity, Service):
                    self.destroy_service(entity)
                else:
                    self.destroy_client(entity)

    def _wait_for_acks(self, publishers) -> None:
        """Let reliable readers acknowledge what was just published (a final state: the HRI publisher's empty
        `tracked`) before the publishers go, at most FINAL_ACK_S in all. A writer destroyed at once lost it in
        about 1 of 6 SIGINTs under two CPU hogs: a first send that missed is only repaired after a heartbeat."""
        deadline = time.monotonic() + FINAL_ACK_S
        for pub in publishers:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                pub.wait_for_all_acked(Duration(nanoseconds=int(left * 1e9)))
            except Exception:  # a context already shut down (rclpy's own handler, another runner): nothing to wait for
                return

    def owned_entities(self) -> List[Any]:
        """The ROS entities the current configuration owns (for tests and diagnostics)."""
        return list(self._owned)

    # --- transitions ---------------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._owning = True
        try:
            self.configure()
        except CONFIGURE_ERRORS as exc:
            self.startup_error = str(exc)
            self.get_logger().error(f'configure failed: {exc}')
            self._release()
            return TransitionCallbackReturn.FAILURE
        except Exception as exc:  # a bug: say what, leave nothing behind, let the state machine report ERROR
            self.startup_error = f'{type(exc).__name__}: {exc}'
            self.get_logger().error(f'configure crashed: {self.startup_error}')
            self._release()
            return TransitionCallbackReturn.FAILURE
        self.configured = True
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = super().on_activate(state)
        self.active = True
        self.activate()
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.active = False
        self.deactivate()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self.active:
            self.active = False
            self.deactivate()
        self._release()
        self.finished, self.exit_code = True, 0
        self.get_logger().info(f'shut down ({self._ending or "lifecycle transition"}); exiting')
        self._ending = ''
        return super().on_shutdown(state)

    def end(self, why: str, linger: Optional[Callable[[], None]] = None) -> None:
        """End as the `shutdown` transition does, for a signal (node_main.StopRequest), while the context is valid:
        deactivate (the final state is published), `linger` (the caller spins, so readers take it while its
        writer still exists: destroyed at once, an acknowledged sample was still lost in ~1 of 6 SIGINTs under two
        CPU hogs), then shut down (everything released, state `finalized`)."""
        self._ending = why
        try:
            if self.active:
                self.trigger_deactivate()
            if linger is not None:
                linger()
            self.trigger_shutdown()
        except Exception as exc:  # mid-transition or finalized already: release what is left all the same
            self.get_logger().warning(f'{why}: no shutdown transition from here ({exc}); releasing')
            if self.active:
                self.active = False
                self.deactivate()
            self._release()
            self.finished = True

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.get_logger().error(f'error in transition from {state.label}; releasing everything')
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def destroy_node(self):
        if self.configured or self._owned:
            if self.active:
                self.active = False
                self.deactivate()
            self._release()
        return super().destroy_node()
