"""The viewer's access token kept in a private file (0600 in a 0700 folder), never in a log or on a topic:
the start-up line names the file, the user opens the URL with its content."""
from __future__ import annotations

import os
import stat
from pathlib import Path

MAX_TOKEN_BYTES = 1024


def default_token_file() -> Path:
    base = os.environ.get('XDG_CONFIG_HOME') or os.path.join(os.path.expanduser('~'), '.config')
    return Path(base) / 'emotion_ros' / 'viewer_token'


def read_token(path: Path) -> str:
    """The token in `path` ('' when there is none); OSError for a file that is not the user's own regular,
    small, private file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, 'O_CLOEXEC', 0))
    except FileNotFoundError:
        return ''
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid() or st.st_size > MAX_TOKEN_BYTES:
            raise OSError(f'token file {path}: not a small regular file of this user')
        if stat.S_IMODE(st.st_mode) & 0o077:
            raise OSError(f'token file {path} is readable by others (chmod 600 it)')
        text = os.read(fd, MAX_TOKEN_BYTES + 1).decode('utf-8', 'replace').strip()
    finally:
        os.close(fd)
    if text and not text.isprintable():
        raise OSError(f'token file {path}: the token holds control characters')
    return text


def write_token(path: Path, token: str) -> None:
    """Atomically: a new 0600 file beside `path`, renamed over it; the folder is created 0700."""
    path = Path(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f'.{path.name}.{os.getpid()}.tmp')
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, 'O_CLOEXEC', 0), 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (token + '\n').encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
