"""`emotion_live` with a chosen executor, for comparing executors on the one-process graph.

Runs emotion_ros.live.main unchanged except for the executor class it instantiates (SingleThreadedExecutor,
rclpy's MultiThreadedExecutor, or rclpy.experimental's C++ EventsExecutor), so every other line of the
runner is the one users get.

Usage: .venv/bin/python bench/live_executor.py {single,multi,events,split} [emotion_live args...]
"""
from __future__ import annotations

import sys


class SplitExecutor:
    """The camera node on its own SingleThreadedExecutor in a thread, everything else on the main one: the
    camera's timer no longer waits behind a detection, and a busy machine schedules two threads, not one."""

    def __init__(self):
        import threading
        from rclpy.executors import SingleThreadedExecutor
        from emotion_ros.nodes.camera_node import CameraNode
        self._main, self._camera = SingleThreadedExecutor(), SingleThreadedExecutor()
        self._camera_type, self._threading, self._thread = CameraNode, threading, None

    def add_node(self, node) -> None:
        if isinstance(node, self._camera_type):
            self._camera.add_node(node)
            self._thread = self._threading.Thread(target=self._spin_camera, name='camera_executor', daemon=True)
            self._thread.start()
        else:
            self._main.add_node(node)

    def _spin_camera(self) -> None:
        import rclpy
        try:
            while rclpy.ok():
                self._camera.spin_once(timeout_sec=0.05)
        except Exception:  # noqa: BLE001 - the runner is ending: nodes destroyed under the loop
            pass

    def spin_once(self, timeout_sec=None) -> None:
        self._main.spin_once(timeout_sec=timeout_sec)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ('single', 'multi', 'events', 'split'):
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    kind, rest = argv[0], argv[1:]
    from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor

    import emotion_ros.live as live
    from rclpy.experimental import EventsExecutor
    live.SingleThreadedExecutor = {'multi': MultiThreadedExecutor, 'events': EventsExecutor,
                                   'split': SplitExecutor}.get(kind, SingleThreadedExecutor)
    return live.main(rest)


if __name__ == '__main__':
    sys.exit(main())
