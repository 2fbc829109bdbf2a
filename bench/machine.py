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
    info = {
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
    info['cpu_kind'] = cpu_kind(info)
    return info


def write_results(out: Path, report: dict, print_table) -> None:
    """Stamp, write `report` as JSON to `out`, and print its table: the common end of every benchmark."""
    report['generated_utc'] = time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + '\n')
    print_table(report)
    print(f'\nwritten {out}')


def cpu_kind(info: dict | None = None) -> str:
    """The results folder name for this CPU kind: `<family>-<int8 ISA>-<cores>c`, e.g. `epyc-vnni-2c`,
    `xeon-amx-2c`, `xeon-avx512-2c` (a Xeon without VNNI), `arm-dotprod-4c`.

    Figures are kept per kind (bench/results/<kind>/) because int8 inference speed depends on the dot-product
    instructions more than on anything else, so a run on one kind never overwrites another's.
    """
    info = info or machine_info()
    model = info.get('cpu_model', '').lower()
    family = next((f for f in ('epyc', 'ryzen', 'xeon', 'core', 'graviton', 'cortex', 'neoverse') if f in model),
                  None) or (platform.machine().lower() or 'cpu')
    flags = set(info.get('cpu_flags_simd', []))
    if 'amx_int8' in flags:
        isa = 'amx'
    elif flags & {'avx512_vnni', 'avx_vnni'}:
        isa = 'vnni'
    elif 'avx512f' in flags:
        isa = 'avx512'
    elif 'avx2' in flags:
        isa = 'avx2'
    elif platform.machine().lower() in ('aarch64', 'arm64'):
        isa = 'dotprod' if 'asimddp' in _arm_features() else 'neon'
    else:
        isa = platform.machine().lower() or 'generic'
    return f"{family}-{isa}-{info.get('cores_usable') or 0}c"


def _arm_features() -> set:
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.lower().startswith('features'):
                return set(line.split(':', 1)[1].split())
    except OSError:
        pass
    return set()
