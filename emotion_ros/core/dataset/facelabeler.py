"""A FaceLabeler dataset folder: read it, check it, and add labelled face crops to it without ever losing one.

Layout (that of github.com/ablacklama/FaceLabeler, so both tools can fill the same folder):

    <root>/labelList.csv    rows `index,label` (no header); the labels offered, in class order
    <root>/faceLabels.csv   rows `filename,label` (no header); filename relative to Images/
    <root>/Images/face<N>.png

FaceLabeler writes rows with Python's csv module (quotechar '|', '\\n' line ends) and resumes numbering
from the last row's `face<N>.png`; we write the same way and keep the same file names so it still can.

Crash safety: an image is written to a temporary file, fsynced, linked to its final name (which fails
rather than overwrites) and its directory fsynced BEFORE its row is appended, flushed and fsynced.
A crash can leave an image without a row (reported by `scan`), never a row without an image.
"""
from __future__ import annotations

import csv
import errno
import io
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np

from emotion_ros.core.emotion.labels import canonical_label

LABEL_LIST = 'labelList.csv'
FACE_LABELS = 'faceLabels.csv'
IMAGES = 'Images'
DEFAULT_LABELS = ('angry', 'disgust', 'fear', 'happy', 'sad', 'surprise', 'neutral')
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp', '.pgm', '.ppm')

_CSV = dict(delimiter=',', quotechar='|', quoting=csv.QUOTE_MINIMAL, lineterminator='\n')
_NUMBERED = re.compile(r'^face(\d+)\.[A-Za-z0-9]+$')
_TEMP = re.compile(r'^\.(?P<name>.+)\.(?P<pid>\d+)\.tmp$')


class DatasetError(OSError):
    """The folder cannot be used (not writable, labelList.csv has no usable label)."""


class UnknownLabel(ValueError):
    """A label that is not in labelList.csv; the message lists the known ones."""


@dataclass(frozen=True)
class Row:
    line: int        # 1-based line in faceLabels.csv
    filename: str    # relative to Images/
    label: str


@dataclass
class DatasetScan:
    """What a folder holds, and everything wrong with it (nothing here is fatal)."""
    root: Path
    labels: List[str]
    rows: List[Row]
    problems: List[str] = field(default_factory=list)
    rows_without_files: List[Row] = field(default_factory=list)
    files_without_rows: List[str] = field(default_factory=list)

    @property
    def counts(self) -> Dict[str, int]:
        """Rows per label: every labelList label (0 if none yet), then labels only the rows use."""
        counts = {label: 0 for label in self.labels}
        for row in self.rows:
            counts[row.label] = counts.get(row.label, 0) + 1
        return counts


def _read_csv(path: Path) -> List[Tuple[int, List[str]]]:
    """(line number, fields) per line; parsed line by line so one torn or binary line spoils only itself.

    A UTF-8 byte-order mark (Excel and Notepad write one) is dropped: read as text it would glue itself
    to the first field and silently turn `0,angry` into an unusable row.
    """
    if not path.exists():
        return []
    text = path.read_bytes().decode('utf-8-sig', errors='replace').replace('\0', '\ufffd')
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        try:
            out.append((number, next(csv.reader([line], **_CSV), [])))
        except csv.Error as exc:
            out.append((number, [f'<{exc}>']))
    return out


def read_labels(root) -> Tuple[List[str], List[str]]:
    """Labels of labelList.csv in file order, and one line per unusable row."""
    labels, problems = [], []
    for line, fields in _read_csv(Path(root) / LABEL_LIST):
        if not fields or all(not f.strip() for f in fields):
            continue
        where = f'{LABEL_LIST} line {line}'
        if len(fields) != 2 or not fields[1].strip():
            problems.append(f'{where}: expected "index,label", got {",".join(fields)!r}')
        elif not fields[0].strip().lstrip('-').isdigit():
            problems.append(f'{where}: index {fields[0]!r} is not an integer (header row?); skipped')
        elif fields[1].strip() in labels:
            problems.append(f'{where}: duplicate label {fields[1].strip()!r}; skipped')
        else:
            labels.append(fields[1].strip())
    return labels, problems


def _bad_filename(name: str) -> Optional[str]:
    if not name:
        return 'empty filename'
    p = Path(name)
    if p.is_absolute() or '..' in p.parts or '\\' in name:
        return f'filename {name!r} is outside {IMAGES}/'
    if p.suffix.lower() not in IMAGE_EXTENSIONS:
        return f'filename {name!r} is not an image file name'
    return None


def read_rows(root) -> Tuple[List[Row], List[str]]:
    """Well-formed rows of faceLabels.csv, and one line per corrupt, duplicate or foreign row."""
    rows, problems, seen = [], [], {}
    for line, fields in _read_csv(Path(root) / FACE_LABELS):
        if not fields or all(not f.strip() for f in fields):
            continue
        where = f'{FACE_LABELS} line {line}'
        if len(fields) != 2 or not fields[1].strip():
            problems.append(f'{where}: expected "filename,label", got {",".join(fields)!r}')
            continue
        name, label = fields[0].strip(), fields[1].strip()
        reason = _bad_filename(name)
        if reason:
            problems.append(f'{where}: {reason}')
        elif name in seen:
            problems.append(f'{where}: {name} already labelled on line {seen[name]}; skipped')
        else:
            seen[name] = line
            rows.append(Row(line, name, label))
    return rows, problems


def outside_link(root, path) -> Optional[str]:
    """Why `path` must not be read as part of the dataset at `root` (a symlink, or a folder link on the way,
    that leads out of the folder), or None when it stays inside."""
    root = Path(root).expanduser().resolve()
    try:
        target = Path(path).resolve()
    except (OSError, RuntimeError) as exc:   # a symlink loop
        return f'cannot resolve: {exc.__class__.__name__}'
    if target != root and root not in target.parents:
        return f'symlink leads outside the dataset folder (to {target})'
    return None


def _image_files(images: Path) -> List[str]:
    if not images.is_dir():
        return []
    return sorted(str(p.relative_to(images)) for p in images.rglob('*')
                  if p.is_file() and not p.name.startswith('.') and p.suffix.lower() in IMAGE_EXTENSIONS)


def scan(root) -> DatasetScan:
    """Read-only check of a folder: labels, rows, and rows/files/labels that do not match up."""
    root = Path(root).expanduser()
    labels, problems = read_labels(root)
    rows, row_problems = read_rows(root)
    problems += row_problems
    files = _image_files(root / IMAGES)
    file_set, row_names = set(files), {r.filename for r in rows}
    result = DatasetScan(root, labels, rows, problems)
    for row in rows:
        if row.filename not in file_set:
            result.rows_without_files.append(row)
            problems.append(f'{FACE_LABELS} line {row.line}: {IMAGES}/{row.filename} does not exist')
        if labels and row.label not in labels:
            problems.append(f'{FACE_LABELS} line {row.line}: label {row.label!r} is not in {LABEL_LIST}')
    result.files_without_rows = [f for f in files if f not in row_names]
    for f in result.files_without_rows:
        problems.append(f'{IMAGES}/{f} has no row in {FACE_LABELS}')
    return result


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_new_file(path: Path, data: bytes) -> None:
    """Create `path` with `data` atomically and durably; FileExistsError if it exists (never overwritten)."""
    tmp = path.with_name(f'.{path.name}.{os.getpid()}.tmp')
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        try:
            with os.fdopen(fd, 'wb') as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        try:
            os.link(tmp, path)
        except OSError as exc:
            if exc.errno == errno.EEXIST:
                raise FileExistsError(errno.EEXIST, 'exists', str(path)) from None
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.EXDEV):
                raise
            if path.exists():  # no hard links here (FAT, some network shares): check, then rename
                raise FileExistsError(errno.EEXIST, 'exists', str(path)) from None
            os.rename(tmp, path)
        _fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


class DatasetWriter:
    """Adds labelled images to a folder (created with default labels if new); one writer per folder."""

    def __init__(self, root, image_ext: str = '.png'):
        self.root = Path(root).expanduser().resolve()
        self.images = self.root / IMAGES
        self.image_ext = image_ext
        try:
            self.images.mkdir(parents=True, exist_ok=True)
            if not (self.root / LABEL_LIST).exists():
                rows = ''.join(f'{i},{label}\n' for i, label in enumerate(DEFAULT_LABELS))
                try:
                    write_new_file(self.root / LABEL_LIST, rows.encode())
                except FileExistsError:
                    pass
            (self.root / FACE_LABELS).touch(exist_ok=True)
        except OSError as exc:
            raise DatasetError(f'dataset folder {self.root}: {exc.strerror or exc}') from exc
        self.removed_temp_files = self._remove_stale_temp_files()
        self.state = scan(self.root)
        if not self.state.labels:
            raise DatasetError(f'{self.root / LABEL_LIST} has no usable label'
                               + (f' ({"; ".join(self.state.problems[:3])})' if self.state.problems else ''))
        self.labels: List[str] = list(self.state.labels)
        self.counts: Counter = Counter(self.state.counts)
        self.next_index = 1 + max([-1] + [int(m.group(1)) for m in map(_NUMBERED.match, self._all_names()) if m])

    def _all_names(self) -> List[str]:
        names = [Path(r.filename).name for r in self.state.rows]
        return names + ([p.name for p in self.images.iterdir()] if self.images.is_dir() else [])

    def _remove_stale_temp_files(self) -> List[str]:
        """Temporary files left by a writer that was killed mid-write (never renamed, so never data)."""
        removed = []
        for p in self.images.iterdir():
            m = _TEMP.match(p.name)
            if m and not _pid_alive(int(m['pid'])):
                p.unlink(missing_ok=True)
                removed.append(p.name)
        return removed

    @property
    def problems(self) -> List[str]:
        return self.state.problems

    def resolve_label(self, name: str) -> str:
        """The labelList spelling of `name` (exact, then case-insensitive, then synonyms: 'Happiness' -> 'happy')."""
        name = name.strip()
        if name in self.labels:
            return name
        for match in (lambda a, b: a.lower() == b.lower(), lambda a, b: canonical_label(a) == canonical_label(b)):
            hits = [label for label in self.labels if match(label, name)]
            if len(hits) == 1:
                return hits[0]
        raise UnknownLabel(f'unknown label {name!r}: {LABEL_LIST} has {", ".join(self.labels)}')

    def save(self, image: np.ndarray, label: str) -> str:
        """Write `image` as the next face<N> file, then its row; returns 'Images/face<N>.png'."""
        label = self.resolve_label(label)
        ok, encoded = cv2.imencode(self.image_ext, image)
        if not ok:
            raise ValueError(f'cannot encode a {image.dtype} {image.shape} image as {self.image_ext}')
        while True:
            name = f'face{self.next_index}{self.image_ext}'
            self.next_index += 1
            try:
                write_new_file(self.images / name, encoded.tobytes())
                break
            except FileExistsError:
                continue
        self._append_row(name, label)
        self.counts[label] += 1
        return f'{IMAGES}/{name}'

    def _append_row(self, filename: str, label: str) -> None:
        path = self.root / FACE_LABELS
        with open(path, 'a+b') as f:
            prefix = b''
            if f.tell() > 0:
                f.seek(-1, os.SEEK_END)
                if f.read(1) not in (b'\n', b'\r'):
                    prefix = b'\n'
            out = io.StringIO()
            csv.writer(out, **_CSV).writerow([filename, label])
            f.write(prefix + out.getvalue().encode())
            f.flush()
            os.fsync(f.fileno())

    def counts_dict(self) -> Dict[str, int]:
        return {label: self.counts.get(label, 0) for label in self.labels} | \
               {k: v for k, v in self.counts.items() if k not in self.labels}

