"""Regenerate the README's pictures: docs/viewer.png (the web viewer in chromium on the male clip) and
docs/demo_frame.png (a frame of the GIF that `make demo` writes).

    .venv/bin/python docs/make_viewer_pictures.py

Needs ../shared/media, Debian's chromium and playwright (as the browser tests do). Every process stays on this
machine (shared-memory DDS, localhost discovery, a domain of its own); the browser is offline.
"""
from __future__ import annotations

import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'test' / 'support'))

from local_dds import local_ros_env  # noqa: E402
from viewer_browser import offline_page, wait_for  # noqa: E402

VENV_BIN = Path(sys.executable).parent
CLIP = REPO.parent / 'shared' / 'media' / 'head-pose-face-detection-male.mp4'


def _start(args, env, log_path):
    log = open(log_path, 'w')
    return subprocess.Popen([str(VENV_BIN / 'emotion_live')] + args, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True), log


def _stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def _shrink_png(src: Path, dst: Path, width: int, colors: int = 192) -> None:
    from PIL import Image
    with Image.open(src) as im:
        im = im.convert('RGB')
        if im.width > width:
            im = im.resize((width, round(im.height * width / im.width)), Image.LANCZOS)
        im.quantize(colors=colors, method=Image.Quantize.MEDIANCUT).save(dst, optimize=True)


def main() -> int:
    import os
    scratch = Path(tempfile.mkdtemp(prefix='viewer_pictures_'))
    env = dict(os.environ, **local_ros_env(scratch))
    proc, log = _start(['--source', str(CLIP), '--loop', '--fps', '12', '--view', '--view-port', '0', '--hue-dry-run'],
                       env,
                       scratch / 'live.log')
    try:
        url = None
        end = time.monotonic() + 180
        while url is None and time.monotonic() < end and proc.poll() is None:
            time.sleep(0.3)
            m = re.search(r'viewer at (http://127\.0\.0\.1:\d+/)', (scratch / 'live.log').read_text())
            url = m.group(1) if m else None
        if url is None:
            print((scratch / 'live.log').read_text()[-3000:], file=sys.stderr)
            return 1
        with offline_page(scratch / 'profile', viewport=(1280, 900)) as (page, _):
            page.goto(url)
            wait_for(page, '() => window.emotionViewer.framesDrawn > 3', 90)
            page.wait_for_timeout(15000)  # a timeline worth looking at, three loops of the clip
            page.screenshot(path=str(scratch / 'viewer.png'))
    finally:
        _stop(proc)
        log.close()
    _shrink_png(scratch / 'viewer.png', REPO / 'docs' / 'viewer.png', 1100)
    print(f'wrote {REPO / "docs" / "viewer.png"}')

    gif = scratch / 'demo.gif'
    proc, log = _start(['--source', 'demo', '--gif', str(gif)], env, scratch / 'demo.log')
    proc.wait(300)
    log.close()
    from PIL import Image
    with Image.open(gif) as im:
        im.seek(im.n_frames // 2)
        im.convert('RGB').save(scratch / 'demo_frame.png')
    _shrink_png(scratch / 'demo_frame.png', REPO / 'docs' / 'demo_frame.png', 320)
    print(f'wrote {REPO / "docs" / "demo_frame.png"}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
