"""`make bench`: every benchmark in one run, then docs/benchmarks.md and a summary table.

Each benchmark runs as its own process (TensorFlow's thread pools and rclpy's context do not leak from
one into the next), in sequence so none competes with another for the two cores. Results go to
bench/results/<cpu kind>/*.json (machine.cpu_kind(), e.g. `epyc-vnni-2c`, `xeon-amx-2c`: a run on one CPU
kind never overwrites another's; stale files of this kind are removed first, so its page only shows figures
from this run); a benchmark that fails is reported and the others still run. docs/benchmarks.md then shows
every kind side by side, docs/benchmarks/<kind>.md each kind in full.

Usage: .venv/bin/python bench/run_all.py [--quick] [--keras PATH] [--only classifier accuracy detectors e2e]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / 'bench'
RESULTS = BENCH / 'results'
DOC = REPO / 'docs' / 'benchmarks.md'
STEPS = ('detectors', 'classifier', 'accuracy', 'e2e', 'link')
BUDGET_S = 15 * 60


def commands(args, results: Path) -> dict:
    py = sys.executable
    quick = args.quick
    classifier = [py, str(BENCH / 'bench_classifier.py'), '--rounds', '3' if quick else '25']
    if quick:
        classifier += ['--accuracy-limit', '300']
    if args.keras:
        classifier += ['--keras', str(args.keras)]
    return {
        'detectors': ([py, str(BENCH / 'bench_detectors.py'), '--rounds', '1' if quick else '5',
                       '--out', str(results / 'detectors.json')], 300),
        'classifier': (classifier + ['--out', str(results / 'classifier.json')], 360),
        'accuracy': ([py, str(BENCH / 'bench_accuracy.py'), '--out', str(results / 'accuracy.json'),
                      '--plot', str(REPO / 'docs' / 'model_accuracy.png')], 600),
        'link': ([py, str(BENCH / 'bench_link.py'), '--seconds', '3' if quick else '10',
                  '--out', str(results / 'link.json')], 300),
        'e2e': ([py, str(BENCH / 'bench_e2e.py'), '--duration', '4' if quick else '20',
                 '--warmup', '2' if quick else '3', '--out', str(results / 'e2e.json')], 900),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--quick', action='store_true', help='smoke run: few rounds, short windows')
    parser.add_argument('--keras', type=Path, help='our .keras model for the Keras rows (bench_classifier default)')
    parser.add_argument('--only', nargs='*', choices=STEPS, help='run these benchmarks only (others keep old results)')
    parser.add_argument('--results', type=Path, help=f'results folder (default {RESULTS}/<cpu kind>)')
    parser.add_argument('--doc', type=Path, default=DOC, help=f'generated index page (default {DOC})')
    args = parser.parse_args(argv)
    started = time.monotonic()
    sys.path.insert(0, str(BENCH))
    from machine import cpu_kind
    results = args.results or RESULTS / cpu_kind()
    print(f'results for this CPU kind go to {results}', flush=True)
    results.mkdir(parents=True, exist_ok=True)
    steps = args.only or list(STEPS)
    for name in steps:
        (results / f'{name}.json').unlink(missing_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED='1', TF_CPP_MIN_LOG_LEVEL='2')
    walls, failures = {}, {}
    plan = commands(args, results)
    for name in steps:
        argv_, timeout = plan[name]
        print(f'\n=== {name}: {" ".join(Path(a).name if a.startswith(str(REPO)) else a for a in argv_[1:])}',
              flush=True)
        t0 = time.monotonic()
        try:
            code = subprocess.run(argv_, env=env, cwd=REPO, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            code = 'timeout'
        walls[name] = time.monotonic() - t0
        if code != 0 or not (results / f'{name}.json').is_file():
            failures[name] = f'exit {code}'
            print(f'=== {name} FAILED ({code})', file=sys.stderr, flush=True)
    wall = time.monotonic() - started
    (results / 'run_all.json').write_text(json.dumps({
        'wall_s': wall, 'steps_wall_s': walls, 'failures': failures, 'quick': args.quick,
        'commit': _git_head(), 'models': _model_hashes(),
        'budget_s': BUDGET_S, 'generated_utc': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}, indent=1) + '\n')
    report_args = ['--results', str(results.parent), '--out', str(args.doc)] if args.results is None else \
        ['--results', str(results), '--out', str(args.doc)]
    subprocess.run([sys.executable, str(BENCH / 'report.py'), *report_args], cwd=REPO, check=False)
    print_summary(results, wall, walls, failures)
    return 1 if failures else 0


def _git_head() -> str:
    try:
        head = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=REPO, capture_output=True, text=True)
        return head.stdout.strip()
    except OSError:
        return ''


def _model_hashes() -> dict:
    """sha256 (first 16 hex) of the shipped models, so a result can be matched to the model it measured."""
    out = {}
    for path in sorted((REPO / 'emotion_ros' / 'models').glob('*.tflite')):
        out[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return out


def print_summary(results: Path, wall: float, walls: dict, failures: dict) -> None:
    import report
    text = report.build(results)
    keep, on = [], False
    for line in text.splitlines():
        if line.startswith('## '):
            on = line in ('## Goals', '## Classifier', '## End to end (real graph over shared-memory DDS)',
                          '## Face detectors', '## Across a UDP link (camera and perception on two hosts)')
        if on and (line.startswith('|') or line.startswith('## ')):
            keep.append(line)
    print('\n' + '\n'.join(keep))
    print(f"\nmake bench: {wall / 60:.1f} min ({', '.join(f'{k} {v:.0f} s' for k, v in walls.items())}); "
          f"budget {BUDGET_S / 60:.0f} min")
    for name, why in failures.items():
        print(f'FAILED: {name} ({why})')


if __name__ == '__main__':
    sys.exit(main())
