"""Where the Hue bridge username (an API secret) lives: a 0600 JSON file outside the repository.

The username grants full control of the bridge, so it is never logged, never a ROS parameter (those are
listable by anyone on the graph) and never written inside a git working tree.
"""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Optional


class CredentialsError(OSError):
    """The username file cannot be used; the message says why (never the username)."""


def default_username_file() -> Path:
    base = os.environ.get('XDG_CONFIG_HOME') or os.path.join(os.path.expanduser('~'), '.config')
    return Path(base) / 'emotion_ros' / 'hue_username.json'


def _inside_git_tree(path: Path) -> Optional[Path]:
    for parent in path.resolve().parents:
        if (parent / '.git').exists():
            return parent
    return None


def check_location(path: Path) -> None:
    repo = _inside_git_tree(path)
    if repo is not None:
        raise CredentialsError(f'refusing to keep the Hue username in {path}: it is inside the git working '
                               f'tree {repo} (choose a path outside it, e.g. {default_username_file()})')


def load_username(path: Path, bridge: str) -> Optional[str]:
    """The stored username for `bridge` (host[:port]), or None. Tightens a too-open file to 0600."""
    path = Path(path)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CredentialsError(f'cannot read {path}: {exc.strerror or exc}') from exc
    if mode & 0o077:
        os.chmod(path, 0o600)
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise CredentialsError(f'{path} is not valid JSON (delete it to pair again)') from exc
    if not isinstance(data, dict):
        raise CredentialsError(f'{path}: expected a JSON object of bridge -> username (delete it to pair again)')
    value = data.get(bridge)
    return value if isinstance(value, str) and value else None


def store_username(path: Path, bridge: str, username: str) -> None:
    """Add or replace `bridge`'s username; the file is created 0600 (its folder 0700) and replaced atomically."""
    path = Path(path)
    check_location(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    data = {}
    try:
        existing = json.loads(path.read_text())
        if isinstance(existing, dict):
            data = existing
    except (OSError, ValueError):
        pass
    data[bridge] = username
    tmp = path.with_name(path.name + '.tmp')
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (json.dumps(data, indent=1) + '\n').encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
