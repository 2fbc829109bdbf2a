"""Run inside `unshare --net` by test_viewer_core: the emotion_viewer node bound to 0.0.0.0 (only `lo` exists
in this namespace), probed over HTTP; prints one JSON line of status codes."""
import json
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

subprocess.run(['ip', 'link', 'set', 'lo', 'up'], check=True)
log_path = Path(sys.argv[1]) / 'emotion_viewer_netns.log'
token_path = Path(sys.argv[1]) / 'private' / 'viewer_token'
log = open(log_path, 'w')
node = subprocess.Popen([str(Path(sys.executable).parent / 'emotion_viewer'), '--ros-args', '-p', 'bind_address:=0.0.0.0',
                         '-p', 'port:=0', '-p', f'token_file:={token_path}'], stdout=log, stderr=subprocess.STDOUT,
                        start_new_session=True)


def status(url, headers=None, method='GET'):
    req = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.headers


try:
    match = None
    end = time.monotonic() + 120
    while time.monotonic() < end and match is None and node.poll() is None:
        time.sleep(0.2)
        match = re.search(r'viewer at http://0\.0\.0\.0:(\d+)/ .*in (\S+) \(mode 0600\)', log_path.read_text())
    if match is None:
        print(log_path.read_text(), file=sys.stderr)
        sys.exit(1)
    port, named = match.groups()
    token = token_path.read_text().strip()
    base = f'http://127.0.0.1:{port}'
    code, headers = status(f'{base}/?token={token}')
    cookie = headers.get('Set-Cookie', '').split(';')[0]
    result = {
        'token_printed': bool(token),
        'token_file_named': named == str(token_path),
        'token_file_mode': oct(token_path.stat().st_mode & 0o777),
        'no_token': status(f'{base}/')[0],
        'wrong_token': status(f'{base}/api/state?token=wrong{token}')[0],
        'ws_no_token': status(f'{base}/ws', {'Connection': 'Upgrade', 'Upgrade': 'websocket',
                                             'Sec-WebSocket-Version': '13',
                                             'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ=='})[0],
        'with_token': code,
        'cookie_then_state': status(f'{base}/api/state', {'Cookie': cookie})[0] if cookie else 0,
        'bearer': status(f'{base}/api/stats', {'Authorization': f'Bearer {token}'})[0],
        'traversal_with_token': status(f'{base}/%2e%2e/%2e%2e/setup.py?token={token}')[0],
        'post_with_token': status(f'{base}/api/state?token={token}', method='POST')[0],
    }
finally:
    if node.poll() is None:
        node.send_signal(signal.SIGINT)
        try:
            node.wait(15)
        except subprocess.TimeoutExpired:
            node.kill()
    log.close()
# Everything the node logged (rcl writes each line to stdout and to /rosout alike), to its end.
result['token_in_log'] = token in log_path.read_text()
print(json.dumps(result))
