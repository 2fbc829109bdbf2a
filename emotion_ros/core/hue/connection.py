"""Reaching the Hue bridge: find it (address or mDNS), choose the API and transport (v1/v2, HTTPS or plain HTTP),
check its TLS identity, pair, and keep the key record; the client it makes is what the controller sends through.

No policy and no moods here: `HueController` drives it by `connect`/`pair` from its tick and owns the backoff;
every fault is raised as a BridgeFault for it to log, publish and back off on.
"""
from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Set

from emotion_ros.core.hue.bridge.discovery import FoundBridge, find_bridge
from emotion_ros.core.hue.bridge.http import Limits
from emotion_ros.core.hue.bridge.tls import TlsPolicy
from emotion_ros.core.hue.bridge.v1 import BridgeFault, BridgeInfo, HueClient, detect, short, split_address
from emotion_ros.core.hue.bridge.v2 import HueV2Client
from emotion_ros.core.hue.credentials import BridgeCredentials, CredentialsError, load_all, store_credentials

PAIRING_REMINDER_S = 15.0


@dataclass
class Settings:
    """What is fixed for the controller's life (the node's read-only parameters)."""
    bridge: str                    # host, host:port or 'auto'; '' with dry_run
    dry_run: bool
    key_file: Path
    ca_file: str = ''
    api: str = 'auto'              # auto | v1 | v2
    request_timeout_s: float = 1.0
    discovery_timeout_s: float = 5.0
    discovery_interfaces: Sequence[str] = ()
    cache_file: Optional[Path] = None
    devicetype: str = field(default_factory=lambda: 'emotion_ros#' + socket.gethostname()[:19])


class Connection:
    """One bridge, from its address to a paired client. `phase`: connecting -> (pairing ->) ready, or failed
    (pairing timed out); `drop` goes back to connecting. `log(level, key, text)` gets unredacted text (the
    controller redacts everything it passes on)."""

    def __init__(self, settings: Settings, params: Mapping, log: Callable[[str, str, str], None], browse_fn=None):
        self.s, self.p, self._log = settings, params, log
        self._browse_fn = browse_fn
        self.phase = 'connecting'
        self.client = None
        self.info: Optional[BridgeInfo] = None
        self.address = settings.bridge
        self.creds: Optional[BridgeCredentials] = None
        self._records: Dict[str, BridgeCredentials] = {}
        self._tls: Optional[TlsPolicy] = None
        self._key = settings.bridge
        self._speaks_https: Set[str] = set()    # bridges (by key) whose TLS handshake reached a certificate
        self._discovery: Optional[tuple] = None
        self._pairing_since = self._pair_next = self._pair_reminded = 0.0
        if not settings.dry_run:
            self._records = load_all(settings.key_file)   # CredentialsError: a start error, before any request

    def secrets(self) -> List[str]:
        out = list(self.client.secrets()) if self.client else []
        return out + (list(self.creds.secrets()) if self.creds else [])

    def _limits(self) -> Limits:
        return Limits(timeout_s=self.s.request_timeout_s)

    def _allow_http(self, key: str, creds: Optional[BridgeCredentials]) -> bool:
        """Plain HTTP (v1) only for a bridge never paired over HTTPS that never showed a certificate in this run."""
        return not (creds and (creds.api == 'v2' or creds.cert_sha256)) and key not in self._speaks_https

    def _detect(self, host: str, port: Optional[int], tls: TlsPolicy, key: str,
                creds: Optional[BridgeCredentials]) -> BridgeInfo:
        try:
            return detect(host, port, tls, self._limits(), self.s.api, allow_http=self._allow_http(key, creds))
        finally:
            if tls.seen_sha256:
                self._speaks_https.add(key)

    # --- discovery ------------------------------------------------------------------------------------------
    def _probe(self, found: FoundBridge) -> Optional[str]:
        try:
            rec = self._records.get(found.bridge_id) if found.bridge_id else None
            tls = TlsPolicy(self.s.ca_file, rec.cert_sha256 if rec else '', found.bridge_id)
            return self._detect(found.host, found.port, tls, found.bridge_id or found.address, rec).bridge_id
        except BridgeFault:
            return None

    def _discover(self) -> Optional[FoundBridge]:
        """The discovered bridge once the search (a daemon thread: it never holds up the process's exit) is done;
        BridgeFault('unreachable') when it found none."""
        if self._discovery is None:
            kw = {'browse_fn': self._browse_fn} if self._browse_fn else {}
            result: Dict[str, object] = {}

            def search():
                try:
                    result['found'] = find_bridge(self.s.cache_file, self._probe, self.s.discovery_timeout_s,
                                                  self.s.discovery_interfaces or None, **kw)
                except LookupError as exc:
                    result['error'] = exc
                except Exception as exc:  # zeroconf/OS errors: reported as a fault, the node goes on
                    result['error'] = LookupError(f'mDNS search failed: {type(exc).__name__}: {short(str(exc), 80)}')
            thread = threading.Thread(target=search, name='hue_discovery', daemon=True)
            self._discovery = (thread, result)
            thread.start()
            self._log('info', '', f'looking for a Hue bridge (cache {self.s.cache_file}, then mDNS _hue._tcp for '
                                  f'up to {self.s.discovery_timeout_s:g} s)')
            return None
        thread, result = self._discovery
        if thread.is_alive():
            return None
        self._discovery = None
        if 'error' in result:
            raise BridgeFault('unreachable', str(result['error']))
        return result['found']

    # --- connect --------------------------------------------------------------------------------------------
    def connect(self, now: float) -> bool:
        """One step: True once a client for the bridge exists (phase `ready`, or `pairing` without a stored key);
        False while discovery runs; BridgeFault when the bridge cannot be used now."""
        if self.s.bridge == 'auto':
            found = self._discover()
            if found is None:
                return False
            host, port, key = found.host, found.port, found.bridge_id
            self.address = found.address
        else:
            (host, port), key = split_address(self.s.bridge), self.s.bridge
        creds = self._records.get(key)
        tls = TlsPolicy(self.s.ca_file, creds.cert_sha256 if creds else '', creds.bridge_id if creds else '')
        info = self._detect(host, port, tls, key, creds)
        self.info, self._tls, self._key = info, tls, key
        first_pin = bool(info.endpoint.tls) and not tls.pinned_sha256
        if first_pin:
            tls.pinned_sha256 = tls.seen_sha256         # pinned for this session now; stored with the key
        if info.api == 'v2':
            self.client = HueV2Client(info.endpoint, info.bridge_id, self.s.request_timeout_s)
        else:
            self.client = HueClient(self.address, timeout_s=self.s.request_timeout_s, ep=info.endpoint,
                                    bridge_id=info.bridge_id)
        how = f'{info.endpoint.scheme.upper()}, {tls.describe()}' if info.endpoint.tls else 'plain HTTP (v1 only)'
        self._log('info', '', f'bridge {self.address}: id {info.bridge_id}, software {info.swversion}, API '
                              f'{info.api} over {how}')
        if first_pin and not self.s.ca_file:
            self._log('warning', '', f'bridge {self.address}: trusting its certificate on first use (sha256 '
                                     f'{tls.seen_sha256}); a different certificate will be refused')
        if creds is None:
            self.phase = 'pairing'
            self._pairing_since = self._pair_reminded = now
            self._pair_next = 0.0
            limit = (f'up to {self.p["pairing_timeout_s"]:g} s' if self.p['pairing_timeout_s'] > 0
                     else 'until pressed')
            self._log('warning', '', f'PAIRING: no Hue key for bridge {self.address} in {self.s.key_file}. Press '
                                     f'the link button on the Hue bridge now; retrying every '
                                     f'{self.p["pairing_retry_s"]:g} s, {limit}.')
            return True
        self.client.set_credentials(creds)
        self.creds = creds
        wanted = BridgeCredentials(creds.username, creds.clientkey, info.bridge_id,
                                   tls.pinned_sha256 if info.endpoint.tls else '', creds.api or info.api)
        if wanted != creds:
            self._store(wanted, 'key record updated (bridge id, certificate pin)')
        self.phase = 'ready'
        return True

    def _store(self, creds: BridgeCredentials, what: str) -> bool:
        try:
            store_credentials(self.s.key_file, self._key, creds)
        except (OSError, CredentialsError) as exc:
            self._log('error', '', f'cannot store the Hue key in {self.s.key_file}: {exc}; it is kept in memory '
                                   'only, so the next start pairs again')
            return False
        self._records[self._key] = creds
        self._log('info', '', f'{what}: stored in {self.s.key_file} (mode 0600)')
        return True

    # --- pairing ----------------------------------------------------------------------------------------------
    def pair(self, now: float) -> str:
        """One pairing step: 'paired', 'timeout' (phase failed) or '' (waiting for the link button)."""
        timeout = self.p['pairing_timeout_s']
        if timeout > 0 and now - self._pairing_since > timeout:
            self._log('error', '', f'PAIRING failed: the link button of bridge {self.address} was not pressed '
                                   f'within {timeout:g} s; restart the node to try again')
            self.phase = 'failed'
            return 'timeout'
        if now < self._pair_next:
            return ''
        self._pair_next = now + self.p['pairing_retry_s']
        try:
            creds = self.client.pair_credentials(self.s.devicetype)
        except BridgeFault as fault:
            if fault.kind != 'link_button':
                self._log('warning', 'pairing_' + fault.kind, f'PAIRING: {fault}')
            elif now - self._pair_reminded >= PAIRING_REMINDER_S:
                self._pair_reminded = now
                self._log('warning', '', f'PAIRING: waiting for the link button on bridge {self.address} '
                                         f'({now - self._pairing_since:.0f} s so far)')
            return ''
        tls_pin = self._tls.pinned_sha256 if self.info.endpoint.tls else ''
        creds = BridgeCredentials(creds.username, creds.clientkey, self.info.bridge_id, tls_pin, self.info.api)
        self.client.set_credentials(creds)
        self.creds = creds
        self._store(creds, f'PAIRING done: bridge {self.address} accepted this node; key'
                    + (' and client key' if creds.clientkey else ''))
        self.phase = 'ready'
        return 'paired'

    # --- teardown -------------------------------------------------------------------------------------------
    def drop(self) -> None:
        """Forget the client (certificate or TLS fault, lost auto-discovered bridge): connect again from scratch."""
        if self.client is not None:
            self.client.close()
        self.client, self.info = None, None
        self.phase = 'connecting'

    def close(self) -> None:
        """Stop the event stream (the node's cleanup); a running search ends on its own (daemon thread, bounded)."""
        if self.client is not None:
            self.client.close()
        self._discovery = None
