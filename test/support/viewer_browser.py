"""Drive Debian's system chromium with Playwright (no browser download), offline: every request that would
leave 127.0.0.1 is refused and recorded, so a test can assert that the page needs no network."""
from __future__ import annotations

import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

CHROMIUM = '/usr/bin/chromium'
# The resolver rule: without it chromium looked up update.googleapis.com and accounts.google.com at start
# (32 DNS packets to the host's resolver, strace) despite --disable-background-networking.
CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                  '--disable-background-networking', '--disable-component-update', '--disable-sync',
                  '--disable-dev-shm-usage', '--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1',
                  '--no-pings', '--disable-domain-reliability']


def chromium_path() -> str:
    return CHROMIUM if Path(CHROMIUM).exists() else (shutil.which('chromium') or '')


@contextmanager
def offline_page(profile_dir: Path, viewport=(1280, 860), executable: str = ''):
    """(page, requests): a fresh-profile chromium page; `requests` lists (url, allowed) of every request."""
    from playwright.sync_api import sync_playwright
    requests = []

    def route(r):
        host = urlsplit(r.request.url).hostname or ''
        allowed = host == '127.0.0.1' or r.request.url.startswith(('data:', 'blob:'))
        requests.append((r.request.url, allowed))
        r.continue_() if allowed else r.abort('internetdisconnected')

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile_dir), executable_path=executable or chromium_path(), headless=True, args=CHROMIUM_FLAGS,
            chromium_sandbox=False, viewport={'width': viewport[0], 'height': viewport[1]},
            service_workers='block')
        try:
            context.route('**/*', route)
            page = context.pages[0] if context.pages else context.new_page()
            page.on('websocket', lambda ws: requests.append((ws.url, urlsplit(ws.url).hostname == '127.0.0.1')))
            yield page, requests
        finally:
            context.close()


def wait_for(page, js: str, timeout_s: float, arg=None):
    """Poll a JS expression in the page until it is truthy; its last value (falsy on timeout)."""
    end = time.monotonic() + timeout_s
    value = None
    while time.monotonic() < end:
        value = page.evaluate(js, arg)
        if value:
            return value
        page.wait_for_timeout(250)
    return value


CANVAS_STATS_JS = """() => {
  const c = document.getElementById('video');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0, sum = 0, sq = 0; const sample = [];
  for (let i = 0; i < d.length; i += 4 * 97) { const v = (d[i] + d[i + 1] + d[i + 2]) / 3; sum += v; sq += v * v; n++; sample.push(v); }
  const mean = sum / n;
  return {width: c.width, height: c.height, mean, std: Math.sqrt(Math.max(0, sq / n - mean * mean)), sample,
          drawn: window.emotionViewer.framesDrawn};
}"""

BARS_JS = """() => [...document.querySelectorAll('.face')].map(card => ({
  id: card.dataset.id,
  bars: [...card.querySelectorAll('.bar')].map(b => [b.dataset.label, parseFloat(b.dataset.score || '0')]),
  points: parseInt(card.querySelector('.timeline').dataset.points || '0'),
}))"""
