"""Hostile input, round 2 (issue 24 rows 2-4), the page's side: Debian's chromium (Playwright, offline) on a
viewer fed a NaN confidence, a latched Hue state with NaN brightness, and face ids / diagnostic names that are
Object.prototype names. Each page must throw no JS error and still show the normal face's card."""
import time

import pytest

from viewer_browser import chromium_path, offline_page, wait_for

pytest.importorskip('playwright')
pytest.importorskip('aiohttp')
pytestmark = pytest.mark.slow

from emotion_ros.core.viewer.server import ViewerConfig, ViewerServer  # noqa: E402

NAN, INF = float('nan'), float('inf')
CARD_JS = """(id) => { const c = [...document.querySelectorAll('.face')].find(c => c.dataset.id === id);
  return !!c && c.querySelector('.title').textContent; }"""


def face(fid, **kw):
    f = {'id': fid, 'label': 'happy', 'confidence': 0.8, 'valence': 0.6, 'arousal': 0.4,
         'labels': ['happy', 'sad'], 'scores': [0.8, 0.2], 'box': [10, 10, 60, 60]}
    f.update(kw)
    return f


@pytest.fixture(scope='module')
def browser(tmp_path_factory):
    if not chromium_path():
        pytest.skip('needs Debian chromium (/usr/bin/chromium; .ci/run installs it)')
    with offline_page(tmp_path_factory.mktemp('chromium-profile')) as (page, requests):
        errors = []
        page.on('pageerror', lambda exc: errors.append(str(exc)))
        page.on('console', lambda msg: errors.append(msg.text) if msg.type == 'error' else None)
        yield page, errors


@pytest.fixture
def server():
    s = ViewerServer(ViewerConfig(port=0), log=lambda line: None)
    s.start()
    yield s
    s.stop()


def _open(browser, server, feed):
    """Load the page while `feed(i)` keeps submitting (like a live graph); the page's JS errors."""
    page, errors = browser
    errors.clear()
    for i in range(3):
        feed(i)
    page.goto(server.url)
    for i in range(3, 30):
        feed(i)
        time.sleep(0.05)
    return page, errors


def _stamp(i):
    return 1000.0 + 0.1 * i


def test_row02_nan_confidence_page_keeps_rendering(browser, server):
    """At cf495d6 the state carried NaN (not JSON): JSON.parse threw on every message and the page froze."""
    def feed(i):
        server.submit_faces(_stamp(i), [face('1', confidence=NAN, valence=INF, scores=[NAN, INF]), face('2')])
    page, errors = _open(browser, server, feed)
    assert wait_for(page, CARD_JS, 60, '2') == '#2 happy 80 %'
    assert wait_for(page, CARD_JS, 10, '1'), 'the NaN face has no card'
    assert wait_for(page, "() => document.getElementById('facecount').textContent === '(2 in view)'", 10)
    assert page.evaluate('() => window.emotionViewer.badMessages + window.emotionViewer.renderErrors') == 0
    assert not errors, errors


def test_row03_latched_nan_hue_state_still_shows_after_a_reload(browser, server):
    """A NaN in the latched Hue state: at cf495d6 a reloaded page showed nothing until the next Hue message."""
    server.submit_hue({'event': 'sent', 'reason': '', 'label': 'happy', 'bridge': '10.0.0.2', 'api_version': 'v2',
                       'targets': ['1'], 'on': True, 'brightness': NAN, 'x': NAN, 'y': INF, 'transition_ms': 400,
                       'last_error': ''})

    def feed(i):
        server.submit_faces(_stamp(i), [face('3')])
    for _ in range(2):  # the first load and a reload: the latched state is all either gets
        page, errors = _open(browser, server, feed)
        hue = wait_for(page, "() => { const t = document.getElementById('hue').innerText; "
                             "return t.includes('happy') && t; }", 60)
        assert hue and 'bridge 10.0.0.2 v2' in hue and '–' in hue, hue   # unknown brightness shown as '–'
        assert wait_for(page, CARD_JS, 30, '3') == '#3 happy 80 %'
        assert not errors, errors


def test_row04_prototype_names_as_ids_and_diagnostics(browser, server):
    """Face ids __proto__/constructor/toString: 28 JS errors at cf495d6, the normal face never got its card and
    the diagnostics table froze."""
    hostile = ['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf']

    def feed(i):
        server.submit_faces(_stamp(i), [face(fid, label=fid if fid != '7' else 'happy') for fid in hostile + ['7']])
        server.submit_diagnostics([{'name': n, 'level': 0, 'message': 'ok', 'values': {'__proto__': 'x'}}
                                   for n in hostile + ['/normal']])
    page, errors = _open(browser, server, feed)
    assert wait_for(page, CARD_JS, 60, '7') == '#7 happy 80 %'
    for fid in hostile:
        assert wait_for(page, CARD_JS, 10, fid), fid
    points = page.evaluate("() => [...document.querySelectorAll('.face .timeline')].map(c => +c.dataset.points)")
    assert len(points) == 6 and min(points) >= 2, points        # every id got its own timeline
    rows = wait_for(page, "() => { const n = [...document.querySelectorAll('#diagnostics tr[data-node]')]"
                          ".map(r => r.dataset.node); return n.length === 6 && n; }", 30)
    assert rows and '/normal' in rows and '__proto__' in rows, rows
    assert page.evaluate('() => window.emotionViewer.renderErrors') == 0
    assert not errors, errors
