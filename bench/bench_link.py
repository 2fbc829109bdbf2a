"""Raw versus compressed images across a UDP link: camera on one "host", detector + classifier on another.

bench/udp_link.py runs the two hosts and a listener in a private network namespace (only `lo`; UDPv4 whitelisted
to 127.0.0.1, no shared memory), camera at 30 fps 640x480 (demo source), 1 face. Per transport: frames with
emotions, latency image stamp -> emotions (p50/p95), and the bytes that crossed the link (every byte on that
namespace's `lo` is ours), per second and per frame. The host's own interfaces' TX packet counters are
recorded around the run (other work on the machine moves them; the namespace has no way out).

Usage: .venv/bin/python bench/bench_link.py [--seconds 10] [--out bench/results/<kind>/link.json]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'bench'))

from machine import cpu_kind, machine_info, write_results  # noqa: E402
from udp_link import run_link  # noqa: E402

TRANSPORTS = ('raw', 'compressed')


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--seconds', type=float, default=10.0)
    ap.add_argument('--warmup', type=float, default=3.0)
    ap.add_argument('--fps', type=float, default=30.0)
    ap.add_argument('--quality', type=int, default=80, help='JPEG quality of the compressed transport')
    ap.add_argument('--out', type=Path)
    args = ap.parse_args(argv)
    info = machine_info()
    results, errors = {}, {}
    for i, transport in enumerate(TRANSPORTS):
        print(f'[link] {transport} ...', flush=True)
        try:
            results[transport] = run_link(transport, args.fps, args.seconds, args.warmup, args.quality,
                                          domain_id=70 + i)
        except (RuntimeError, OSError) as exc:
            errors[transport] = str(exc)[-3000:]
            print(f'[link] {transport} failed: {str(exc)[:1500]}', file=sys.stderr)
    raw, comp = results.get('raw'), results.get('compressed')
    report = {'machine': info, 'fps': args.fps, 'size': [640, 480], 'seconds': args.seconds, 'quality': args.quality,
              'transports': results, 'errors': errors,
              'compressed_bytes_vs_raw': (comp['lo_bytes_per_frame'] / raw['lo_bytes_per_frame']
                                          if raw and comp and raw['lo_bytes_per_frame'] else None)}
    write_results(args.out or REPO / 'bench' / 'results' / cpu_kind(info) / 'link.json', report, print_table)
    return 1 if errors and not results else 0


def print_table(report: dict) -> None:
    print(f"{'transport':11} {'frames':>6} {'w/ emotions':>11} {'p50 ms':>7} {'p95 ms':>7} {'MB/s':>7} {'KB/frame':>9}")
    for name, r in report['transports'].items():
        print(f"{name:11} {r['frames']:6} {r['with_emotions']:11} {r['latency_p50_ms'] or 0:7.1f} "
              f"{r['latency_p95_ms'] or 0:7.1f} {r['lo_bytes_per_s'] / 1e6:7.2f} {r['lo_bytes_per_frame'] / 1e3:9.1f}")


if __name__ == '__main__':
    sys.exit(main())
