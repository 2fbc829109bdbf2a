"""Where the Hue bridge keys live: a 0600 JSON file outside the repository, read and written without surprises.

The v1 username / v2 application key grants full control of the bridge, so it is never logged, never a
ROS parameter (those are listable by anyone on the graph) and never written inside a git working tree.
Per bridge the file holds the application key, the v2 client key (from `generateclientkey`), the bridge
id and the pinned certificate fingerprint together. Reading checks the file (regular, ours, small, valid)
before anything else and only then tightens its mode, through the opened descriptor; writing never
follows a symlink (exclusive create of a random name in a private folder, then an atomic rename).
"""
from __future__ import annotations

import json
import os
import re
import secrets
import stat
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, Iterable, Optional

from emotion_ros.core.log_text import untrusted

MAX_KEY_FILE_BYTES = 64 * 1024


class CredentialsError(OSError):
    """The key file cannot be used; the message says why (never the key)."""


@dataclass(frozen=True)
class BridgeCredentials:
    username: str                 # v1 username = v2 hue-application-key
    clientkey: str = ''           # v2 client key (entertainment streaming), stored with the key, unused here
    bridge_id: str = ''           # lower-case, as the bridge reports it in /api/0/config
    cert_sha256: str = ''         # pinned HTTPS certificate (pin-on-first-use)
    api: str = ''                 # 'v1' or 'v2': what the bridge was paired over

    def secrets(self) -> Iterable[str]:
        return [s for s in (self.username, self.clientkey) if s]


MIN_FRAGMENT = 8   # a piece of a key this long is redacted wherever it appears (a cut text keeps only pieces)


def _folded(text: str) -> str:
    """Lower case, one character for one (so positions still match `text`)."""
    low = text.lower()
    return low if len(low) == len(text) else ''.join(c if len(c.lower()) != 1 else c.lower() for c in text)


# One layer of the trivial encodings a bridge or a proxy may apply to a key it quotes: percent (URL) encoding,
# JSON/JS \uXXXX and \xXX escapes, HTML numeric entities. Hex digits in either case.
_ESCAPE = re.compile(r'%([0-9A-Fa-f]{2})|\\u([0-9A-Fa-f]{4})|\\x([0-9A-Fa-f]{2})|&#([0-9]{1,7});|&#[xX]([0-9A-Fa-f]{1,6});')
MAX_DECODE_LAYERS = 3   # `%252D` is `%2D` is `-`: a key encoded up to three times over is still found


def _decode_layer(view: str, spans):
    """`view` with one layer of escapes decoded, and for each of its characters the (start, end) in the original
    text it came from (`spans`: the same for `view`; None = `view` is the original). None when nothing decodes."""
    out, out_spans, pos = [], [], 0
    for m in _ESCAPE.finditer(view):
        digits = next(g for g in m.groups() if g is not None)
        code = int(digits, 10 if m.group(4) is not None else 16)
        if code > 0x10FFFF:
            continue
        for i in range(pos, m.start()):
            out.append(view[i])
            out_spans.append(spans[i] if spans else (i, i + 1))
        out.append(chr(code))
        first, last = (spans[m.start()], spans[m.end() - 1]) if spans else ((m.start(),), (m.end(),))
        out_spans.append((first[0], last[-1]))
        pos = m.end()
    if not out:
        return None
    for i in range(pos, len(view)):
        out.append(view[i])
        out_spans.append(spans[i] if spans else (i, i + 1))
    return ''.join(out), out_spans


def _views(text: str):
    """The text as given, then each decoded layer (with the original span of every character)."""
    view, spans = text, None
    yield view, spans
    for _ in range(MAX_DECODE_LAYERS):
        decoded = _decode_layer(view, spans)
        if decoded is None:
            return
        view, spans = decoded
        yield view, spans


def redact(text: str, secret_values: Iterable[str]) -> str:
    """`text` with every given secret, every piece of one at least MIN_FRAGMENT characters long (any case, also
    percent-encoded, \\u/\\x-escaped or as HTML entities, in whole or in part, up to MAX_DECODE_LAYERS deep), and
    anything shaped like a 40-character Hue key (encoded or not) replaced by `<key>`.

    Pieces matter because a bridge text is often cut for a log line: cut first, a key at the cut kept up to 37 of
    its 40 characters (cf495d6). `redacted` redacts before it cuts; this catches any cut made elsewhere."""
    text = str(text)
    grams = set()
    for value in secret_values:
        if not value or len(value) < 4:
            continue
        v = _folded(value)
        n = min(len(v), MIN_FRAGMENT)
        grams |= {v[i:i + n] for i in range(len(v) - n + 1)}
    spans = []
    for view, view_spans in _views(text):
        def original(start, end):
            return (start, end) if view_spans is None else (view_spans[start][0], view_spans[end - 1][1])
        folded = _folded(view)
        for gram in grams:
            i = folded.find(gram)
            while i >= 0:
                spans.append(original(i, i + len(gram)))
                i = folded.find(gram, i + 1)
        if view_spans is not None:
            spans.extend(original(m.start(), m.end()) for m in _KEYLIKE.finditer(view))
    if spans:
        out, pos = [], 0
        for start, end in sorted(spans):
            if start > pos:
                out.append(text[pos:start])
                out.append('<key>')
            elif not out:
                out.append('<key>')
            pos = max(pos, end)
        out.append(text[pos:])
        text = ''.join(out)
    return _KEYLIKE.sub('<key>', text)


def redacted(value, secret_values: Iterable[str] = (), limit: int = 200) -> str:
    """A bridge-supplied value as one printable, capped line for a log or `~/state`, redacted BEFORE it is cut
    (the one helper for every bridge text: log_text.untrusted after redact)."""
    if isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value)
        except (TypeError, ValueError, RecursionError):
            text = type(value).__name__
    return untrusted(redact(text, secret_values), limit)


_KEYLIKE = re.compile(r'(?<![0-9A-Za-z-])[0-9A-Za-z-]{40}(?![0-9A-Za-z-])')   # the shape of a Hue key


def default_username_file() -> Path:
    base = os.environ.get('XDG_CONFIG_HOME') or os.path.join(os.path.expanduser('~'), '.config')
    return Path(base) / 'emotion_ros' / 'hue_username.json'


def _inside_git_tree(path: Path) -> Optional[Path]:
    for parent in path.resolve().parents:
        if (parent / '.git').exists():
            return parent
    return None


def check_location(path: Path) -> None:
    repo = _inside_git_tree(Path(path))
    if repo is not None:
        raise CredentialsError(f'refusing to keep the Hue key in {path}: it is inside the git working '
                               f'tree {repo} (choose a path outside it, e.g. {default_username_file()})')


def read_regular_file(path: Path, max_bytes: int, what: str, follow_symlinks: bool = True,
                      private: bool = False) -> Optional[bytes]:
    """The bytes of a small regular file, or None if it does not exist.

    Refuses (CredentialsError) FIFOs, devices, sockets and folders before opening them for reading, files
    larger than `max_bytes`, and with `follow_symlinks=False` symlinks. With `private`, the file must be
    owned by this user; a group/other-readable one is tightened to 0600 through the descriptor, after the
    checks. The open is non-blocking and re-checked with fstat, so a file swapped in between is caught."""
    path = Path(path)
    try:
        st = os.stat(path, follow_symlinks=follow_symlinks)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CredentialsError(f'cannot read {what} {path}: {exc.strerror or exc}') from None
    if stat.S_ISLNK(st.st_mode):
        raise CredentialsError(f'{what} {path} is a symlink: refusing it (point the parameter at the real file)')
    if not stat.S_ISREG(st.st_mode):
        raise CredentialsError(f'{what} {path} is not a regular file: refusing to read it')
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, 'O_CLOEXEC', 0) | (0 if follow_symlinks else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise CredentialsError(f'cannot read {what} {path}: {exc.strerror or exc}') from None
    try:
        fst = os.fstat(fd)
        if not stat.S_ISREG(fst.st_mode) or (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino):
            raise CredentialsError(f'{what} {path} changed while it was opened: refusing it')
        if fst.st_size > max_bytes:
            raise CredentialsError(f'{what} {path} is {fst.st_size} bytes, more than the {max_bytes} allowed')
        if private and fst.st_uid != os.geteuid():
            raise CredentialsError(f'{what} {path} belongs to uid {fst.st_uid}, not to this user: refusing it')
        chunks, total = [], 0
        while True:
            data = os.read(fd, 65536)
            if not data:
                break
            chunks.append(data)
            total += len(data)
            if total > max_bytes:
                raise CredentialsError(f'{what} {path} is larger than the {max_bytes} bytes allowed')
        data = b''.join(chunks)
        if private:
            _parse(data, path)                         # valid before its mode is touched
            if stat.S_IMODE(fst.st_mode) & 0o077:
                os.fchmod(fd, 0o600)
        return data
    finally:
        os.close(fd)


def _parse(data: bytes, path: Path) -> Dict[str, BridgeCredentials]:
    try:
        raw = json.loads(data.decode('utf-8'))
    except (ValueError, RecursionError):
        raise CredentialsError(f'{path} is not valid JSON (delete it to pair again)') from None
    if not isinstance(raw, dict):
        raise CredentialsError(f'{path}: expected a JSON object of bridge -> key (delete it to pair again)')
    out = {}
    for bridge, value in raw.items():
        if isinstance(value, str):                     # the format before v2: bridge -> username
            value = {'username': value}
        if not isinstance(value, dict) or not isinstance(value.get('username'), str) or not value['username'] \
                or not all(isinstance(value.get(k, ''), str) for k in ('clientkey', 'bridge_id', 'cert_sha256', 'api')):
            raise CredentialsError(f'{path}: the entry for {bridge!r} is not a key record (delete it to pair again)')
        out[bridge] = BridgeCredentials(**{k: value.get(k, '') for k in BridgeCredentials.__dataclass_fields__})
    return out


def load_all(path: Path) -> Dict[str, BridgeCredentials]:
    data = read_regular_file(path, MAX_KEY_FILE_BYTES, 'key file', follow_symlinks=False, private=True)
    return {} if data is None else _parse(data, Path(path))


def load_credentials(path: Path, bridge: str) -> Optional[BridgeCredentials]:
    """The stored record for `bridge` (as configured, or a bridge id), or None."""
    return load_all(path).get(bridge)


def load_username(path: Path, bridge: str) -> Optional[str]:
    creds = load_credentials(path, bridge)
    return creds.username if creds else None


def _private_folder(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    st = os.lstat(folder)
    if not stat.S_ISDIR(st.st_mode):
        raise CredentialsError(f'{folder} is not a folder (a symlink?): refusing to write the key there')
    if st.st_uid != os.geteuid():
        raise CredentialsError(f'{folder} belongs to uid {st.st_uid}: refusing to write the key there')
    if stat.S_IMODE(st.st_mode) & 0o022:
        raise CredentialsError(f'{folder} is writable by others (mode {stat.S_IMODE(st.st_mode):o}): refusing to '
                               'write the key there (chmod 700 it)')


def store_credentials(path: Path, bridge: str, creds: BridgeCredentials) -> None:
    """Add or replace `bridge`'s record; the file is 0600 in a private folder and replaced atomically."""
    path = Path(path)
    check_location(path)
    _private_folder(path.parent)
    data = {k: {f: v for f, v in asdict(c).items() if v} for k, c in load_all(path).items()}
    data[bridge] = {f: v for f, v in asdict(creds).items() if v}
    tmp = path.with_name(f'.{path.name}.{secrets.token_hex(8)}.tmp')
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, 'O_CLOEXEC', 0), 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (json.dumps(data, indent=1) + '\n').encode())
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    os.replace(tmp, path)                              # rename replaces a planted symlink, never writes through it


def store_username(path: Path, bridge: str, username: str) -> None:
    store_credentials(path, bridge, BridgeCredentials(username))
