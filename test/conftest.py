"""Test-run isolation: every run gets its own DDS domain on shared memory only, and scratch homes.

The environment is set at import time, before any test module imports rclpy, so every node created in
this process and every subprocess a test starts stays on this machine (no packet leaves it).
"""
import os
import random
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Shared test helpers (bridge emulator, graph runner, browser driver) import by module name from any test folder.
sys.path.insert(0, str(Path(__file__).resolve().parent / 'support'))

from local_dds import local_ros_env as _local_ros_env, remove_leftover_shm, shm_files  # noqa: E402
SHARED = REPO.parent / 'shared'
MEDIA = SHARED / 'media'
DATASETS = SHARED / 'datasets'
# Test artefacts (viewer screenshot, Hue request logs) outlive the run's scratch folder; .build/ is git-ignored.
ARTIFACTS = Path(os.environ.get('EMOTION_TEST_ARTIFACTS', REPO / '.build' / 'test-artifacts'))

_SCRATCH = Path(tempfile.mkdtemp(prefix='emotion_ros_test_'))
_SHM_BEFORE = shm_files()


def local_ros_env(domain_id: int) -> dict:
    """Environment that keeps DDS on shared memory and localhost discovery, in a domain of our own."""
    return _local_ros_env(_SCRATCH, domain_id)


DOMAIN_ID = int(os.environ.get('EMOTION_ROS_TEST_DOMAIN_ID', random.randint(1, 100)))
os.environ.update(local_ros_env(DOMAIN_ID))
tempfile.tempdir = None


def pytest_configure(config):
    config.addinivalue_line('markers', 'slow: takes more than ~20 s (still runs in CI)')
    config.addinivalue_line('markers', 'ros: creates rclpy nodes / DDS participants')


def pytest_report_header(config):
    return f'ROS_DOMAIN_ID={DOMAIN_ID} (shared-memory Fast DDS, localhost discovery); scratch={_SCRATCH}'


def pytest_sessionfinish(session, exitstatus):
    """Remove scratch and the Fast DDS shared-memory files this run left behind (killed nodes leak them)."""
    remove_leftover_shm(_SHM_BEFORE)
    shutil.rmtree(_SCRATCH, ignore_errors=True)


def require_shared(*parts) -> Path:
    """Path under ../shared, or skip the test with the reason when the shared data is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f'needs {path} (the project shared data folder beside the repository); not present here')
    return path


def fer_val_500():
    """The first 500 FER2013 `val` faces: (images uint8 N x 48 x 48, labels, canonical class names); skips
    without ../shared."""
    import numpy as np

    from emotion_ros.core.emotion.labels import canonical_label
    with np.load(require_shared('datasets', 'fer2013', 'fer2013_trainval.npz')) as z:
        val = np.flatnonzero(z['split'] == 'val')[:500]
        return z['images'][val], z['labels'][val].astype(int), [canonical_label(x) for x in z['classes']]


@pytest.fixture(scope='session')
def python_exe() -> str:
    return sys.executable


@pytest.fixture(scope='session')
def ros_env() -> dict:
    """Full environment for subprocesses: this run's isolated DDS settings on top of os.environ."""
    return dict(os.environ)


@pytest.fixture
def ros():
    """An rclpy context for one test (nodes the test creates live in it), shut down afterwards."""
    rclpy = pytest.importorskip('rclpy')
    rclpy.init()
    yield
    rclpy.shutdown()


@pytest.fixture
def ros_node(ros, request):
    """A plain node for the test to subscribe, publish and call parameter services with; destroyed afterwards.
    Named by the test module's PROBE_NODE where a test needs to know the name (default: test_probe)."""
    import rclpy
    node = rclpy.create_node(getattr(request.module, 'PROBE_NODE', 'test_probe'))
    yield node
    node.destroy_node()
