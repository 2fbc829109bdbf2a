"""`bridge:=auto`: find the bridge by mDNS (`_hue._tcp`, zeroconf) and remember the last address it had.

The cache is tried first (a bridge keeps its DHCP lease for days; mDNS takes seconds and may be blocked on
the network); it is trusted only when the bridge there reports the cached bridge id.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence

from emotion_ros.core.hue.credentials import CredentialsError, read_regular_file

SERVICE = '_hue._tcp.local.'
MAX_CACHE_BYTES = 16 * 1024


@dataclass(frozen=True)
class FoundBridge:
    host: str
    port: int
    bridge_id: str = ''      # lower case, '' if the announcement had none

    @property
    def address(self) -> str:
        return f'{self.host}:{self.port}' if self.port not in (0, 443) else self.host


def browse(timeout_s: float = 5.0, interfaces: Optional[Sequence[str]] = None, want: int = 1) -> List[FoundBridge]:
    """Bridges announcing `_hue._tcp` within `timeout_s` (stops early once `want` were seen)."""
    from zeroconf import IPVersion, ServiceBrowser, ServiceListener, Zeroconf

    found: List[FoundBridge] = []

    class Listener(ServiceListener):
        def add_service(self, zc, type_, name):
            info = zc.get_service_info(type_, name, timeout=int(max(200, timeout_s * 500)))
            if info is None:
                return
            addresses = info.parsed_addresses(IPVersion.V4Only)
            if not addresses:
                return
            props = {k.decode(errors='replace'): (v or b'').decode(errors='replace')
                     for k, v in (info.properties or {}).items()}
            bridge_id = props.get('bridgeid', '').lower()[:32]
            found.append(FoundBridge(addresses[0], int(info.port or 443), bridge_id))

        def update_service(self, zc, type_, name):
            pass

        def remove_service(self, zc, type_, name):
            pass

    zc = Zeroconf(interfaces=list(interfaces) if interfaces else None, ip_version=IPVersion.V4Only)
    try:
        ServiceBrowser(zc, SERVICE, Listener())
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and len(found) < want:
            time.sleep(0.05)
    finally:
        zc.close()
    return list(dict.fromkeys(found))


def load_cache(path: Path) -> Optional[FoundBridge]:
    try:
        raw = read_regular_file(path, MAX_CACHE_BYTES, 'bridge cache', follow_symlinks=False, private=False)
        data = json.loads(raw) if raw else None
        return FoundBridge(str(data['host']), int(data['port']), str(data.get('bridge_id', '')))
    except (CredentialsError, ValueError, TypeError, KeyError, RecursionError):
        return None


def store_cache(path: Path, found: FoundBridge) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f'.{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp')
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, json.dumps(dict(asdict(found), seen=time.time())).encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


def find_bridge(cache_path: Path, probe: Callable[[FoundBridge], Optional[str]], timeout_s: float = 5.0,
                interfaces: Optional[Sequence[str]] = None,
                browse_fn: Callable[..., List[FoundBridge]] = browse) -> FoundBridge:
    """The bridge to use: the cached one if `probe` (-> bridge id or None) confirms it, else mDNS.

    LookupError with the reason when nothing answers."""
    cached = load_cache(cache_path)
    if cached is not None:
        bridge_id = probe(cached)
        if bridge_id is not None and (not cached.bridge_id or bridge_id == cached.bridge_id):
            return FoundBridge(cached.host, cached.port, bridge_id)
    found = browse_fn(timeout_s, interfaces)
    if cached is not None and cached.bridge_id:
        found.sort(key=lambda f: f.bridge_id != cached.bridge_id)   # the known bridge first, at its new address
    for candidate in found:
        bridge_id = probe(candidate)
        if bridge_id is not None:
            result = FoundBridge(candidate.host, candidate.port, bridge_id)
            store_cache(cache_path, result)
            return result
    where = f'cached {cached.address} did not answer; ' if cached else ''
    raise LookupError(f'{where}no Hue bridge announced {SERVICE} within {timeout_s:g} s '
                      '(set bridge:=<address> if mDNS is blocked on this network)')
