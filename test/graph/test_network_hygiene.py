"""No packet leaves the machine: every address the real graph sends to, as the kernel sees it (strace).

The Fast DDS profile (config/fastdds_shm_only.xml) carries data over shared memory, but with
ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST rmw_fastrtps adds its own UDPv4 transport for discovery, with
127.0.0.1 as the only initial peer and multicast off (measured: it binds sockets on 0.0.0.0 and on the
host's address, and sends only to 127.0.0.1). This test holds that last part: with the default range
(SUBNET) the same node sends to 239.255.0.1, which it would catch.
"""
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ros_graph import spin_until

pytest.importorskip('rclpy')
from emotion_msgs.msg import EmotionArray  # noqa: E402
from emotion_ros.nodes.qos import results_qos  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.slow]
SEND = re.compile(r'\b(sendto|sendmsg|sendmmsg|send|write|writev|connect)\(')
INET = re.compile(r'sin_addr=inet_addr\("([0-9.]+)"\)')
INET6 = re.compile(r'inet_pton\(AF_INET6, "([0-9a-fA-F:.]+)"')
PEER = re.compile(r'^\d+\s+\w+\(\d+<(?:UDP|TCP)(v6)?:\[[^\]]*->(.+?)\]>')   # -yy: the fd's connected peer


def destinations(trace: str) -> set:
    """(kind, address) of every IPv4/IPv6 destination in an strace -yy log of send, write and connect calls:
    addresses given to a send, the connected peer of the socket written to, and TCP connects (a SYN). A
    connect of a UDP socket sends nothing by itself (chromium's IPv6 reachability probe is one)."""
    found = set()
    for line in trace.splitlines():
        if not SEND.search(line) or 'AF_NETLINK' in line or 'AF_UNIX' in line:
            continue
        peer = PEER.search(line)
        if peer:
            host = peer.group(2).rsplit(':', 1)[0].strip('[]')
            found.add(('v6' if peer.group(1) or ':' in host else 'v4', host))
        if re.search(r'connect\(\d+<UDP', line):
            continue
        found.update(('v4', a) for a in INET.findall(line))
        found.update(('v6', a) for a in INET6.findall(line))
    return found


def test_destinations_parser_sees_loopback_multicast_and_v6():
    trace = '\n'.join([
        '12 sendmsg(16, {msg_name={sa_family=AF_INET, sin_port=htons(7412), sin_addr=inet_addr("127.0.0.1")}, '
        'msg_namelen=16}, MSG_NOSIGNAL) = 572',
        '12 sendto(9, "RTPS", 4, 0, {sa_family=AF_INET, sin_port=htons(7400), sin_addr=inet_addr("239.255.0.1")}, 16) = 4',
        '12 connect(3, {sa_family=AF_INET6, sin6_port=htons(443), sin6_flowinfo=htonl(0), '
        'inet_pton(AF_INET6, "2001:db8::1", &sin6_addr), sin6_scope_id=0}, 28) = 0',
        '12 bind(17, {sa_family=AF_INET, sin_port=htons(0), sin_addr=inet_addr("192.0.2.2")}, 16) = 0',
        '12 sendto(4, [{nlmsg_len=20}], 20, 0, {sa_family=AF_NETLINK, nl_pid=0, nl_groups=00000000}, 12) = 20',
        '12 connect(3<UDPv6:[95938]>, {sa_family=AF_INET6, sin6_port=htons(443), sin6_flowinfo=htonl(0), '
        'inet_pton(AF_INET6, "2001:4860:4860::8888", &sin6_addr), sin6_scope_id=0}, 28) = 0',
        '12 connect(5<UDP:[101016]>, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("10.255.255.53")}, 16) = 0',
        '12 sendto(5<UDP:[192.0.2.2:32881->10.255.255.53:53]>, "x", 1, 0, NULL, 0) = 1',
        '12 write(7<TCP:[127.0.0.1:5000->127.0.0.1:8080]>, "GET", 3) = 3',
    ])
    assert destinations(trace) == {('v4', '127.0.0.1'), ('v4', '239.255.0.1'), ('v6', '2001:db8::1'),
                                   ('v4', '10.255.255.53')}


def _children(pid):
    kids = []
    for entry in os.listdir('/proc'):
        try:
            if entry.isdigit() and int(Path(f'/proc/{entry}/stat').read_text().rsplit(')', 1)[1].split()[1]) == pid:
                kids.append(int(entry))
        except (OSError, IndexError, ValueError):
            pass
    return kids


def _loopback(kind, address):
    return address.startswith('127.') if kind == 'v4' else address == '::1'


def _strace():
    strace = shutil.which('strace')
    if strace is None:
        pytest.skip('needs strace (apt install strace) to see where packets are sent')
    probe = subprocess.run([strace, '-f', '-qq', '-e', 'trace=none', 'true'], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f'strace cannot trace here (ptrace refused?): {probe.stderr.strip()[:200]}')
    return [strace, '-f', '-qq', '-yy', '-e', 'trace=connect,send,sendto,sendmsg,sendmmsg,write,writev']


def test_live_graph_sends_only_to_loopback(ros_node, ros_env, tmp_path):
    trace = _strace()
    log = tmp_path / 'strace.txt'
    exe = shutil.which('emotion_live', path=str(Path(sys.executable).parent))
    got = []
    ros_node.create_subscription(EmotionArray, '/emotions', got.append, results_qos(50))
    proc = subprocess.Popen([*trace, '-o', str(log), exe, '--source', 'demo', '--loop', '--duration', '40'],
                            env=ros_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert spin_until(ros_node, lambda: len(got) >= 5, 150), 'no emotions reached the listener'
    finally:
        for kid in _children(proc.pid):       # Ctrl-C to emotion_live; strace ends with it
            os.kill(kid, signal.SIGINT)
        try:
            out = proc.communicate(timeout=60)[0]
        except subprocess.TimeoutExpired:
            proc.kill()
            out = proc.communicate()[0]
    sent = destinations(log.read_text(errors='replace'))
    assert ('v4', '127.0.0.1') in sent, (sorted(sent), out[-2000:])   # discovery went somewhere: the trace works
    assert {d for d in sent if not _loopback(*d)} == set(), sorted(sent)


def test_browser_of_the_viewer_tests_sends_nothing_off_the_machine(tmp_path):
    """The browser tests' chromium (test/support/viewer_browser.py flags), traced from its start: no DNS lookup, no
    connection anywhere but 127.0.0.1 while it loads a page and idles (its background services start then)."""
    pytest.importorskip('playwright')
    from viewer_browser import chromium_path, offline_page
    if not chromium_path():
        pytest.skip('needs Debian\'s chromium (apt install chromium)')
    trace, log = _strace(), tmp_path / 'strace.txt'
    wrapper = tmp_path / 'chromium-traced'
    wrapper.write_text('#!/bin/sh\nexec ' + ' '.join(trace) + f' -o {log} {chromium_path()} "$@"\n')
    wrapper.chmod(0o755)
    with offline_page(tmp_path / 'profile', executable=str(wrapper)) as (page, requests):
        page.set_content('<p id="x">offline</p>')
        page.wait_for_timeout(8000)
        assert page.inner_text('#x') == 'offline'
    sent = destinations(log.read_text(errors='replace'))
    assert {d for d in sent if not _loopback(*d)} == set(), sorted(sent)
