"""emotion-dataset: capture labelled faces through a running dataset_recorder_node, show counts, check a folder.

    emotion-dataset capture --label happy --count 50 [--interval 0.2] [--node /dataset_recorder]
    emotion-dataset counts [--node /dataset_recorder] [--json]
    emotion-dataset check ~/emotion_dataset          (offline: no ROS needed)

Exit status: 0 done, 1 the recorder refused or ran out of faces (reason printed), 2 no recorder reachable.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import List, Optional

DEFAULT_NODE = '/dataset_recorder'


def _parse(argv: Optional[List[str]]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog='emotion-dataset', description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest='command', required=True)
    cap = sub.add_parser('capture', help='save COUNT crops of the largest face under LABEL')
    cap.add_argument('--label', required=True, help='a label of the dataset\'s labelList.csv (e.g. happy)')
    cap.add_argument('--count', type=int, default=1, help='crops to save (default 1)')
    cap.add_argument('--interval', type=float, default=0.0,
                     help='seconds between crops (default 0: one per new camera frame)')
    cap.add_argument('--timeout', type=float, default=None,
                     help='give up waiting for the answer after this long (default: scaled to the burst)')
    cap.add_argument('-v', '--verbose', action='store_true', help='print every saved file')
    counts = sub.add_parser('counts', help='images per label, as the recorder publishes them')
    counts.add_argument('--json', action='store_true', help='print the published counts as JSON')
    counts.add_argument('--timeout', type=float, default=10.0, help='seconds to wait for the recorder')
    for p in (cap, counts):
        p.add_argument('--node', default=DEFAULT_NODE, help=f'recorder node name (default {DEFAULT_NODE})')
    check = sub.add_parser('check', help='report every problem in a dataset folder (no ROS needed)')
    check.add_argument('folder')
    args = ap.parse_args(argv)
    if args.command == 'capture' and args.count < 0:
        ap.error('--count must be >= 0')
    return args


def _fail(code: int, text: str) -> int:
    print(f'emotion-dataset: {text}', file=sys.stderr)
    return code


def _capture(node, args) -> int:
    import rclpy
    from emotion_msgs.srv import Capture
    name = f'{args.node.rstrip("/")}/capture'
    client = node.create_client(Capture, name)
    if not client.wait_for_service(timeout_sec=10.0):
        return _fail(2, f'no service {name} (is dataset_recorder_node running, in this ROS_DOMAIN_ID?)')
    timeout = args.timeout or 15.0 + max(1, args.count) * max(args.interval, 0.5)
    future = client.call_async(Capture.Request(label=args.label, count=args.count, interval=args.interval))
    rclpy.spin_until_future_complete(node, future, timeout_sec=timeout)
    if not future.done():
        return _fail(2, f'no answer from {name} within {timeout:.0f} s (--timeout)')
    result = future.result()
    if args.verbose:
        for path in result.saved:
            print(path)
    if not result.success:
        return _fail(1, result.message)
    span = f' ({result.saved[0]} .. {result.saved[-1]})' if result.saved and not args.verbose else ''
    print(result.message + span)
    return 0


def _counts(node, args) -> int:
    import rclpy

    from emotion_msgs.msg import DatasetCounts
    from emotion_ros.nodes.qos import latched_qos
    topic = f'{args.node.rstrip("/")}/counts'
    got = []
    node.create_subscription(DatasetCounts, topic, got.append, latched_qos())
    end = time.monotonic() + args.timeout
    while not got and time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.1)
    if not got:
        return _fail(2, f'nothing on {topic} within {args.timeout:g} s (is dataset_recorder_node running?)')
    msg = got[-1]
    counts = dict(zip(msg.labels, (int(n) for n in msg.counts)))
    if args.json:
        print(json.dumps({'dataset': msg.dataset, 'labels': list(msg.labels), 'counts': counts,
                          'total': int(msg.total), 'target_per_label': int(msg.target_per_label)}))
        return 0
    target = int(msg.target_per_label)
    width = max([len(k) for k in counts] + [5])
    print(f'{msg.dataset}: {msg.total} images')
    for label, n in counts.items():
        print(f'  {label:<{width}} {n:6d}' + (f' / {target}' if target else ''))
    return 0


def _check(args) -> int:
    from emotion_ros.core.dataset.facelabeler import scan
    s = scan(args.folder)
    print(f'{s.root}: {len(s.rows)} labelled images; labels {", ".join(s.labels) or "(no labelList.csv)"}')
    for label, n in s.counts.items():
        print(f'  {label:<10} {n:6d}')
    for problem in s.problems:
        print(f'problem: {problem}')
    return 1 if s.problems else 0


def main(argv: Optional[List[str]] = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    if args.command == 'check':
        return _check(args)
    import rclpy
    rclpy.init(args=[])
    node = rclpy.create_node('emotion_dataset_cli')
    try:
        return _capture(node, args) if args.command == 'capture' else _counts(node, args)
    except KeyboardInterrupt:
        return 130
    finally:
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


if __name__ == '__main__':
    sys.exit(main())
