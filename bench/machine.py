"""The machine a benchmark ran on, recorded beside every figure (numbers only compare on the same box)."""
from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path


def _cpu_model() -> str:
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or 'unknown'


def _cpu_flags() -> list:
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('flags'):
                flags = set(line.split(':', 1)[1].split())
                return sorted(f for f in flags if f.startswith(('avx', 'amx')) or f in ('fma', 'f16c'))
    except OSError:
        pass
    return []


def _mem_gib() -> float:
    try:
        for line in Path('/proc/meminfo').read_text().splitlines():
            if line.startswith('MemTotal:'):
                return round(int(line.split()[1]) / 2 ** 20, 1)
    except OSError:
        pass
    return 0.0


def machine_info() -> dict:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
    return {
        'cpu_model': _cpu_model(),
        'cores_online': os.cpu_count(),
        'cores_usable': usable,
        'cpu_flags_simd': _cpu_flags(),
        'memory_gib': _mem_gib(),
        'hypervisor': 'hypervisor' in Path('/proc/cpuinfo').read_text() if Path('/proc/cpuinfo').exists() else None,
        'load_average': os.getloadavg(),
        'os': f'{platform.system()} {platform.release()}',
        'python': platform.python_version(),
        'gpu': None,
        'utc': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
    }


def write_results(out: Path, report: dict, print_table) -> None:
    """Stamp, write `report` as JSON to `out`, and print its table: the common end of every benchmark."""
    report['generated_utc'] = time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + '\n')
    print_table(report)
    print(f'\nwritten {out}')
