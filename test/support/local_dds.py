"""Keep ROS 2 traffic on this machine: the settings every test, benchmark and demo process runs with.

DDS discovers peers by multicast on every interface by default; these settings use the shared-memory
Fast DDS profile in config/ for data, localhost discovery (rmw_fastrtps then adds its own UDPv4 transport
with 127.0.0.1 as the only peer and no multicast: test_network_hygiene traces every send), a domain of the
caller's choosing and scratch homes.
Killed nodes leave Fast DDS shared-memory files behind; `remove_leftover_shm` cleans those a run created
and no live process still uses.
"""
from __future__ import annotations

import glob
import os
import random
from pathlib import Path
from typing import Optional

FASTDDS_PROFILE = Path(__file__).resolve().parents[2] / 'config' / 'fastdds_shm_only.xml'


def local_ros_env(scratch: Path, domain_id: Optional[int] = None) -> dict:
    """Variables to add to a process environment (a fresh random domain 1..100 unless one is given)."""
    scratch = Path(scratch)
    (scratch / 'tmp').mkdir(parents=True, exist_ok=True)
    return {
        'ROS_DOMAIN_ID': str(domain_id if domain_id is not None else random.randint(1, 100)),
        'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST',
        'FASTDDS_DEFAULT_PROFILES_FILE': str(FASTDDS_PROFILE),
        'RMW_IMPLEMENTATION': 'rmw_fastrtps_cpp',
        'ROS_HOME': str(scratch / 'ros_home'),
        'ROS_LOG_DIR': str(scratch / 'ros_log'),
        'KERAS_HOME': str(scratch / 'keras'),
        'MPLCONFIGDIR': str(scratch / 'mpl'),
        'TMPDIR': str(scratch / 'tmp'),
        'TF_CPP_MIN_LOG_LEVEL': '2',
        'PYTHONUNBUFFERED': '1',
    }


def shm_files() -> set:
    return set(glob.glob('/dev/shm/*fastdds*') + glob.glob('/dev/shm/sem.fastdds*'))


def shm_in_use() -> set:
    """/dev/shm paths some live process still maps or holds open (another run's nodes must keep theirs)."""
    used = set()
    for maps in glob.glob('/proc/[0-9]*/maps'):
        try:
            with open(maps) as f:
                used.update(line.split(None, 5)[5].strip() for line in f if '/dev/shm/' in line)
        except (OSError, IndexError):
            pass
    for fd in glob.glob('/proc/[0-9]*/fd/*'):
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith('/dev/shm/'):
            used.add(target)
    return used


def remove_leftover_shm(before: set) -> int:
    """Delete Fast DDS shared-memory files created since `before` that nothing uses any more."""
    removed = 0
    for path in shm_files() - before - shm_in_use():
        try:
            os.unlink(path)
            removed += 1
        except OSError:
            pass
    return removed
