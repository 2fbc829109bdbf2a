"""`emotion-train import`: a FaceLabeler folder, a folder-per-class tree or an npz -> one npz in the
shared format (images uint8 N x 48 x 48, labels int8, classes, source).

Images that are not already face crops go through the live classifier's own detector and crop
(`emotion_ros.core.faces.detection` + `emotion_ros.core.faces.crop`), so training sees what the robot
sees. Every image that does not make it into the output is listed in the report with the reason:
unreadable files, unknown labels, rows without files, files without rows, images without a face.
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from emotion_ros.core.dataset import facelabeler as fl
from emotion_ros.core.faces.crop import DEFAULT_MARGIN, MARGIN_FOR_BACKEND, crop_face
from emotion_ros.core.faces.detection import DEFAULT_BACKEND
from emotion_ros.core.frames.encoding import ImageDecodeError
from emotion_ros.core.frames.header import DEFAULT_MAX_PIXELS, max_pixels_reason, read_image_file
from emotion_ros.core.emotion.labels import CANONICAL_LABELS, canonical_label
from emotion_ros.core.log_text import untrusted

SIZE = 48


@dataclass
class ImportReport:
    source: str
    kind: str
    imported: int = 0
    per_class: dict = field(default_factory=dict)
    problems: list = field(default_factory=list)
    unreadable: list = field(default_factory=list)
    unknown_labels: list = field(default_factory=list)
    rows_without_files: list = field(default_factory=list)
    files_without_rows: list = field(default_factory=list)
    no_face: list = field(default_factory=list)
    several_faces: list = field(default_factory=list)
    outside_links: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    @property
    def skipped(self) -> int:
        return (len(self.unreadable) + len(self.unknown_labels) + len(self.rows_without_files)
                + len(self.files_without_rows) + len(self.no_face) + len(self.outside_links))


def _read_image(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS):
    """BGR/gray uint8 image; ImageDecodeError with the reason when the file is not a decodable image
    or declares more than `max_pixels` pixels (checked in its header, before decoding)."""
    img = read_image_file(path, max_pixels, cv2.IMREAD_UNCHANGED)
    if img.dtype != np.uint8:
        img = cv2.convertScaleAbs(img, alpha=255.0 / max(float(img.max()), 1.0))
    if img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    return img


def looks_like_crop(img: np.ndarray) -> bool:
    """Small, square images are taken to be face crops already (FER-style 48x48 ... 96x96)."""
    h, w = img.shape[:2]
    return max(h, w) <= 96 and abs(h - w) <= 0.1 * max(h, w)


class FaceCropper:
    """Image -> 48x48 crop of its largest face (detecting only when the image is not a crop already)."""

    def __init__(self, mode: str = 'auto', detector=None, detector_name: str = DEFAULT_BACKEND):
        if mode not in ('auto', 'always', 'never'):
            raise ValueError(f'crop mode must be auto/always/never, got {mode!r}')
        self.mode, self._detector, self.detector_name = mode, detector, detector_name

    @property
    def detector(self):
        if self._detector is None:
            from emotion_ros.core.faces.detection import create_detector
            self._detector = create_detector(self.detector_name)
        return self._detector

    def __call__(self, img: np.ndarray, name: str, report: ImportReport):
        if self.mode == 'never' or (self.mode == 'auto' and looks_like_crop(img)):
            gray = img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
            h, w = gray.shape
            return crop_face(gray, (0, 0, w, h), SIZE, margin=1.0)
        bgr = img if img.ndim == 3 else cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
        faces = list(self.detector.detect(bgr))
        if not faces:
            report.no_face.append(name)
            return None
        if len(faces) > 1:
            report.several_faces.append(f'{name}: {len(faces)} faces, used the largest')
        box = max(faces, key=lambda f: f.w * f.h)
        return crop_face(bgr, box, SIZE, margin=MARGIN_FOR_BACKEND.get(self.detector_name, DEFAULT_MARGIN))


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:   # a name too long for the file system, say
        return False


def _class_index(label: str, classes: list):
    name = canonical_label(label)
    return classes.index(name) if name in classes else None


def _facelabeler(root: Path, classes, cropper, report, progress):
    scan = fl.scan(root)
    classes = classes or [canonical_label(c) for c in scan.labels] or list(CANONICAL_LABELS)
    report.problems += [p for p in scan.problems if 'is not in labelList' not in p and 'does not exist' not in p
                        and 'has no row' not in p]
    for r in scan.rows_without_files:   # a row naming a file behind a folder link out of the dataset
        outside = _exists(root / fl.IMAGES / r.filename) and fl.outside_link(root, root / fl.IMAGES / r.filename)
        if outside:
            report.outside_links.append(f'{fl.IMAGES}/{r.filename}: {outside}')
        else:
            report.rows_without_files.append(f'{fl.FACE_LABELS} line {r.line}: {r.filename}')
    report.files_without_rows = [f'{fl.IMAGES}/{f}' for f in scan.files_without_rows]
    missing = {r.filename for r in scan.rows_without_files}
    items = []
    for row in scan.rows:
        if row.filename in missing:
            continue
        idx = _class_index(row.label, classes)
        if idx is None:
            report.unknown_labels.append(f'{fl.FACE_LABELS} line {row.line}: {row.filename} label {row.label!r}')
            continue
        items.append((root / fl.IMAGES / row.filename, f'{fl.IMAGES}/{row.filename}', idx))
    return classes, items


def _class_tree(root: Path, classes, report):
    dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith('.'))
    if classes is None:
        classes = []
        for d in dirs:
            name = canonical_label(d.name)
            if name not in classes:
                classes.append(name)
    items = []
    for d in dirs:
        idx = _class_index(d.name, classes)
        files = sorted(p for p in d.rglob('*') if p.is_file() and not p.name.startswith('.'))
        for p in files:
            rel = str(p.relative_to(root))
            if p.suffix.lower() not in fl.IMAGE_EXTENSIONS:
                report.unreadable.append(f'{rel}: not an image file name')
            elif idx is None:
                report.unknown_labels.append(f'{rel}: folder {d.name!r} is not a known class')
            else:
                items.append((p, rel, idx))
    for p in sorted(root.iterdir()):
        if p.is_file() and not p.name.startswith('.'):
            report.files_without_rows.append(f'{p.name}: not inside a class folder')
    return classes, items


def _from_npz(path: Path, classes, cropper, report):
    from .data import load_npz
    ds = load_npz(path)
    out_classes = classes or list(ds.classes)
    keep, labels, images = [], [], []
    for i, (img, lab) in enumerate(zip(ds.images, ds.labels)):
        idx = _class_index(ds.classes[lab], out_classes)
        if idx is None:
            report.unknown_labels.append(f'row {i}: label {ds.classes[lab]!r}')
            continue
        crop = img if img.shape == (SIZE, SIZE) else cropper(img, f'row {i}', report)
        if crop is None:
            continue
        keep.append(i)
        labels.append(idx)
        images.append(crop)
    extra = {}
    if ds.split is not None:
        extra['split'] = ds.split[keep]
    if ds.ferplus_votes is not None:
        extra['ferplus_votes'] = ds.ferplus_votes[keep]
        extra['ferplus_classes'] = np.array(ds.ferplus_classes)
    sources = [f'{path.name}:{i}' for i in keep]
    return out_classes, images, labels, sources, extra


def split_by_file_order(labels: np.ndarray, n_classes: int, val_fraction: float) -> np.ndarray:
    """'train'/'val' per row: the last `val_fraction` of each label's rows, in file order, are val.

    Crops captured in one burst are near-duplicates, so a random split would put copies of the same moment
    on both sides and flatter val accuracy; the newest captures (another session) make an honest val.
    """
    split = np.full(len(labels), 'train', dtype='<U5')
    for c in range(n_classes):
        rows = np.flatnonzero(labels == c)
        k = int(np.ceil(len(rows) * val_fraction)) if len(rows) > 1 else 0
        if k:
            split[rows[-k:]] = 'val'
    return split


def import_dataset(source, classes=None, crop: str = 'auto', detector=None, detector_name: str = DEFAULT_BACKEND,
                   progress: bool = True, val_fraction: float = 0.2, max_pixels: int = DEFAULT_MAX_PIXELS):
    """Read any supported source -> (arrays for the npz, ImportReport).

    Folder sources get a `split` array (see split_by_file_order) so `emotion-train fit` can select on val;
    an npz source keeps its own split. Files that are symlinks out of the folder are refused (outside_links);
    images declaring more than `max_pixels` pixels are refused before decoding (unreadable, with the reason).
    """
    from tqdm import tqdm
    reason = max_pixels_reason(max_pixels)
    if reason:
        raise ValueError(f'max_pixels {reason}')
    source = Path(source).expanduser()
    classes = [canonical_label(c) for c in classes] if classes else None
    cropper = FaceCropper(crop, detector, detector_name)
    if source.is_file() and source.suffix == '.npz':
        report = ImportReport(str(source), 'npz')
        classes, images, labels, sources, extra = _from_npz(source, classes, cropper, report)
    elif source.is_dir():
        is_fl = (source / fl.FACE_LABELS).exists() or (source / fl.LABEL_LIST).exists()
        report = ImportReport(str(source), 'facelabeler' if is_fl else 'class_tree')
        if is_fl:
            classes, items = _facelabeler(source, classes, cropper, report, progress)
        else:
            classes, items = _class_tree(source, classes, report)
        images, labels, sources, extra = [], [], [], {}
        for path, name, idx in tqdm(items, desc='import', unit='img', disable=not progress):
            outside = fl.outside_link(source, path)
            if outside:
                report.outside_links.append(f'{name}: {outside}')
                continue
            try:
                img = _read_image(path, max_pixels)
            except ImageDecodeError as exc:
                report.unreadable.append(f'{name}: not a readable image ({exc})')
                continue
            c = cropper(img, name, report)
            if c is not None:
                images.append(c)
                labels.append(idx)
                sources.append(name)
    else:
        raise FileNotFoundError(f'{source}: not a folder or an .npz file')
    if len(classes) > 127:
        raise ValueError(f'{len(classes)} classes do not fit int8 labels')
    arrays = {
        'images': np.array(images, np.uint8).reshape(-1, SIZE, SIZE),
        'labels': np.array(labels, np.int8),
        'classes': np.array(classes),
        'source': np.array(sources, dtype=str),
        **extra,
    }
    if 'split' not in arrays:
        arrays['split'] = split_by_file_order(arrays['labels'], len(classes), val_fraction)
    report.imported = len(labels)
    report.per_class = {c: int((arrays['labels'] == i).sum()) for i, c in enumerate(classes)}
    return arrays, report


def write_npz(path, arrays: dict) -> None:
    """Atomic: written to a temporary file in the same folder, fsynced, then renamed over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f'.{path.name}.{os.getpid()}.tmp')
    try:
        with open(tmp, 'wb') as f:
            np.savez_compressed(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def run_import(args) -> int:
    try:
        arrays, report = import_dataset(args.source, args.classes.split(',') if args.classes else None,
                                        args.crop, detector_name=args.detector, progress=not args.quiet,
                                        val_fraction=args.val_fraction, max_pixels=args.max_pixels)
    except (FileNotFoundError, ValueError) as exc:
        print(f'emotion-train import: {exc}', file=sys.stderr)
        return 2
    if report.imported == 0:
        print(f'emotion-train import: nothing to import from {args.source}', file=sys.stderr)
    else:
        write_npz(args.out, arrays)
    rep = report.to_dict() | {'out': str(args.out) if report.imported else None}
    report_path = Path(args.report) if args.report else Path(str(args.out) + '.report.json')
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(json.dumps(rep, indent=1))
    lines = [f'imported {report.imported} faces into {args.out}: {report.per_class}']
    for key in ('unreadable', 'outside_links', 'unknown_labels', 'rows_without_files', 'files_without_rows',
                'no_face', 'several_faces', 'problems'):
        items = getattr(report, key)
        if items:
            lines.append(f'{key.replace("_", " ")} ({len(items)}):')
            lines += [f'  {untrusted(x, 300)}' for x in items[:20]]   # file names and rows are text from outside
            lines += [f'  ... {len(items) - 20} more'] if len(items) > 20 else []
    lines.append(f'full report: {report_path}')
    print('\n'.join(lines), file=sys.stderr)
    if report.imported == 0:
        return 2
    return 1 if (args.strict and (report.skipped or report.problems)) else 0


def add_arguments(p):
    p.add_argument('source', help='FaceLabeler folder, folder-per-class tree, or .npz')
    p.add_argument('--out', required=True, help='output .npz (shared format)')
    p.add_argument('--classes', help='comma-separated class list to map onto (default: the source\'s own)')
    p.add_argument('--crop', default='auto', choices=['auto', 'always', 'never'],
                   help='detect+crop faces: auto = only for images that are not small square crops')
    p.add_argument('--detector', default=DEFAULT_BACKEND,
                   help='face detector backend (default: the live face_detector_node\'s default)')
    p.add_argument('--val-fraction', type=float, default=0.2,
                   help='folder sources: the last FRACTION of each label\'s images (file order) become val')
    p.add_argument('--max-pixels', type=int, default=DEFAULT_MAX_PIXELS,
                   help='refuse images whose header declares more pixels than this, before decoding '
                        f'(default {DEFAULT_MAX_PIXELS}, 8K UHD)')
    p.add_argument('--report', help='where to write the JSON report (default: OUT.report.json)')
    p.add_argument('--strict', action='store_true', help='exit 1 when anything was skipped or looked wrong')
    p.add_argument('--quiet', action='store_true', help='no progress bar')
