"""Test-run isolation: every run gets its own DDS domain on shared memory only, and scratch homes.

The environment is set at import time, before any test module imports rclpy, so every node created in
this process and every subprocess a test starts stays on this machine (no packet leaves it).
"""
import glob
import os
import random
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / 'shared'
MEDIA = SHARED / 'media'
DATASETS = SHARED / 'datasets'
FASTDDS_PROFILE = REPO / 'config' / 'fastdds_shm_only.xml'

_SCRATCH = Path(tempfile.mkdtemp(prefix='emotion_ros_test_'))
_SHM_BEFORE = set(glob.glob('/dev/shm/*fastdds*') + glob.glob('/dev/shm/sem.fastdds*'))


def local_ros_env(domain_id: int) -> dict:
    """Environment that keeps DDS on shared memory and localhost discovery, in a domain of our own."""
    return {
        'ROS_DOMAIN_ID': str(domain_id),
        'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST',
        'FASTDDS_DEFAULT_PROFILES_FILE': str(FASTDDS_PROFILE),
        'RMW_IMPLEMENTATION': 'rmw_fastrtps_cpp',
        'ROS_HOME': str(_SCRATCH / 'ros_home'),
        'ROS_LOG_DIR': str(_SCRATCH / 'ros_log'),
        'KERAS_HOME': str(_SCRATCH / 'keras'),
        'MPLCONFIGDIR': str(_SCRATCH / 'mpl'),
        'TMPDIR': str(_SCRATCH / 'tmp'),
        'TF_CPP_MIN_LOG_LEVEL': '2',
        'PYTHONUNBUFFERED': '1',
    }


DOMAIN_ID = int(os.environ.get('EMOTION_ROS_TEST_DOMAIN_ID', random.randint(1, 100)))
os.environ.update(local_ros_env(DOMAIN_ID))
(_SCRATCH / 'tmp').mkdir(parents=True, exist_ok=True)
tempfile.tempdir = None


def pytest_configure(config):
    config.addinivalue_line('markers', 'slow: takes more than ~20 s (still runs in CI)')
    config.addinivalue_line('markers', 'ros: creates rclpy nodes / DDS participants')


def pytest_report_header(config):
    return f'ROS_DOMAIN_ID={DOMAIN_ID} (shared-memory Fast DDS, localhost discovery); scratch={_SCRATCH}'


def _shm_in_use() -> set:
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


def pytest_sessionfinish(session, exitstatus):
    """Remove scratch and the Fast DDS shared-memory files this run left behind (killed nodes leak them)."""
    leftovers = set(glob.glob('/dev/shm/*fastdds*') + glob.glob('/dev/shm/sem.fastdds*')) - _SHM_BEFORE
    for path in leftovers - _shm_in_use():
        try:
            os.unlink(path)
        except OSError:
            pass
    shutil.rmtree(_SCRATCH, ignore_errors=True)


def require_shared(*parts) -> Path:
    """Path under ../shared, or skip the test with the reason when the shared data is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f'needs {path} (the project shared data folder beside the repository); not present here')
    return path


@pytest.fixture(scope='session')
def python_exe() -> str:
    return sys.executable


@pytest.fixture(scope='session')
def ros_env() -> dict:
    """Full environment for subprocesses: this run's isolated DDS settings on top of os.environ."""
    return dict(os.environ)
