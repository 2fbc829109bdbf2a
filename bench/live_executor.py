"""`emotion_live` with a chosen executor, for comparing executors on the one-process graph.

Runs emotion_ros.live.main unchanged except for the executor class it instantiates (SingleThreadedExecutor
as shipped, or rclpy's MultiThreadedExecutor), so every other line of the runner is the one users get.

Usage: .venv/bin/python bench/live_executor.py {single,multi} [emotion_live args...]
"""
from __future__ import annotations

import sys


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ('single', 'multi'):
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    kind, rest = argv[0], argv[1:]
    from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor

    import emotion_ros.live as live
    live.SingleThreadedExecutor = MultiThreadedExecutor if kind == 'multi' else SingleThreadedExecutor
    return live.main(rest)


if __name__ == '__main__':
    sys.exit(main())
