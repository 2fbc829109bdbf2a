"""How the Hue bridge's HTTPS certificate is checked: against a CA, or pinned on first use; CN = bridge id always.

Signify's Hue root CA certificate is public, but no Python package we can depend on ships it (aiohue 4.9
connects with `ssl=False`), so the default is pin-on-first-use: the first certificate the bridge presents
(CN must equal the bridge id it reports) is stored as a SHA-256 fingerprint beside the application key,
and any other certificate later is refused with a clear message. With `ca_file` (e.g. the Hue root CA
PEM, or the CA a test made) the chain is verified instead, and the CN is still checked against the bridge
id. Verification is never switched off.
"""
from __future__ import annotations

import hashlib
import ssl
from typing import Optional

from emotion_ros.core.hue.bridge.http import HttpError


def fingerprint(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def common_name(der: bytes) -> str:
    """The subject CN of a DER certificate ('' when absent or unparsable)."""
    try:
        from cryptography import x509
        from cryptography.x509.oid import NameOID
        cert = x509.load_der_x509_certificate(der)
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return str(names[0].value) if names else ''
    except (ValueError, ImportError):
        return ''


class TlsPolicy:
    """One bridge's certificate rules. `pinned_sha256`: the fingerprint stored at pairing (pin mode);
    `bridge_id`: the id the CN must equal once known. After a connection, `seen_sha256`/`seen_cn` say what
    the bridge presented (to be stored on first use)."""

    def __init__(self, ca_file: str = '', pinned_sha256: str = '', bridge_id: str = ''):
        self.ca_file = ca_file
        self.pinned_sha256 = pinned_sha256.lower()
        self.bridge_id = bridge_id.lower()
        self.seen_sha256 = ''
        self.seen_cn = ''
        self._ctx: Optional[ssl.SSLContext] = None

    @property
    def mode(self) -> str:
        return 'ca' if self.ca_file else 'pin'

    def describe(self) -> str:
        if self.ca_file:
            return f'certificate verified against {self.ca_file}, CN = bridge id'
        if self.pinned_sha256:
            return f'certificate pinned (sha256 {self.pinned_sha256[:16]}...), CN = bridge id'
        return 'certificate pinned on first use, CN = bridge id'

    def context(self) -> ssl.SSLContext:
        if self._ctx is None:
            if self.ca_file:
                try:
                    ctx = ssl.create_default_context(cafile=self.ca_file)
                except (OSError, ssl.SSLError) as exc:
                    raise HttpError('certificate', f'cannot load ca_file {self.ca_file}: '
                                                   f'{getattr(exc, "strerror", None) or exc}') from None
                ctx.check_hostname = False          # bridges are addressed by IP; the CN (bridge id) is checked below
                ctx.verify_mode = ssl.CERT_REQUIRED
                ctx.verify_flags &= ~getattr(ssl, 'VERIFY_X509_STRICT', 0)   # bridge certs lack some v3 extensions
            else:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE     # no chain: the exact certificate is pinned in check()
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            self._ctx = ctx
        return self._ctx

    def check(self, der: bytes) -> None:
        """Raise HttpError('certificate') unless `der` is acceptable for this bridge."""
        if not der:
            raise HttpError('certificate', 'the bridge presented no certificate')
        self.seen_sha256, self.seen_cn = fingerprint(der), common_name(der)
        if self.pinned_sha256 and self.seen_sha256 != self.pinned_sha256:
            raise HttpError('certificate', f'the bridge certificate CHANGED (sha256 {self.seen_sha256[:16]}..., '
                                           f'pinned {self.pinned_sha256[:16]}...): refusing to connect. If you '
                                           'replaced or reset the bridge, delete its entry in the key file and pair '
                                           'again; otherwise something is impersonating the bridge')
        if self.bridge_id and self.seen_cn.lower() != self.bridge_id:
            raise HttpError('certificate', f'certificate CN {self.seen_cn!r} is not the bridge id '
                                           f'{self.bridge_id!r}: refusing to connect')
