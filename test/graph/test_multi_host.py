"""Scale out: camera on one "host", face detector + emotion classifier on another, over DDS on UDP only.

bench/udp_link.py runs both hosts and a listener in a network namespace of its own (only `lo`, so no packet
can leave the machine) with config/fastdds_udp_localhost.xml (UDPv4 whitelisted to 127.0.0.1, no shared
memory); where namespaces are not allowed it falls back to the host's 127.0.0.1 with the same profile.
Raw images and the compressed (JPEG) transport of camera, detector and classifier are both exercised;
the byte counts on `lo` show what crossed the link."""
import sys

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / 'bench'))
from udp_link import can_unshare, run_link  # noqa: E402

pytest.importorskip('rclpy')
pytestmark = [pytest.mark.ros, pytest.mark.slow]

RAW_FRAME = 640 * 480 * 3


@pytest.fixture(scope='module')
def links():
    return {t: run_link(t, fps=10.0, seconds=4.0, warmup=2.0, domain_id=60 + i)
            for i, t in enumerate(('raw', 'compressed'))}


@pytest.mark.parametrize('transport', ['raw', 'compressed'])
def test_emotions_cross_the_udp_link(links, transport):
    r = links[transport]
    assert all(r['alive'].values()), r                                 # no node died on the way
    assert r['frames'] >= 20 and r['with_emotions'] >= 0.5 * r['frames'], r
    assert 0.9 <= r['faces_per_frame'] <= 1.1 and r['happy_share'] >= 0.8, r   # the astronaut smiles
    if can_unshare():
        assert r['interfaces'] == ['lo'], r                            # nothing else to leave by
        assert not any(r['shm_mapped'].values()), r                    # UDP only: no shared-memory segment


def test_compressed_transport_sends_far_fewer_bytes(links):
    if not can_unshare():
        pytest.skip('no private network namespace here: lo also carries other traffic, and LOCALHOST discovery '
                    'adds shared memory, so bytes on lo do not measure the link')
    raw, compressed = links['raw'], links['compressed']
    assert raw['lo_bytes_per_frame'] >= 1.5 * RAW_FRAME, raw           # two subscribers of the raw image
    assert compressed['lo_bytes_per_frame'] <= 0.3 * raw['lo_bytes_per_frame'], (compressed, raw)
