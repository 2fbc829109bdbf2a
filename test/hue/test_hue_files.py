"""Issue 18 item 6: the Hue key file and colour file are validated before anything touches them; secrets are
never written through a symlink; special files (FIFO, /dev/zero, folders) are refused without reading."""
import json
import os
import stat
import threading

import pytest

from emotion_ros.core.hue.colors import ColorConfigError, load_colors
from emotion_ros.core.hue.credentials import (BridgeCredentials, CredentialsError, load_credentials, load_username,
                                              store_credentials, store_username)

pytestmark = pytest.mark.timeout(60)


def _victim(tmp_path):
    victim = tmp_path / 'victim.txt'
    victim.write_text('not yours to chmod\n')
    os.chmod(victim, 0o644)
    return victim


def test_item06_key_file_symlink_is_refused_and_its_target_mode_untouched(tmp_path):
    victim = _victim(tmp_path)
    link = tmp_path / 'hue_username.json'
    link.symlink_to(victim)
    with pytest.raises(CredentialsError, match='symlink'):
        load_username(link, 'bridge')
    assert stat.S_IMODE(victim.stat().st_mode) == 0o644


def test_item06_invalid_key_file_is_refused_before_its_mode_changes(tmp_path):
    victim = _victim(tmp_path)                                 # any file of ours that is not a key file
    with pytest.raises(CredentialsError, match='not valid JSON'):
        load_username(victim, 'bridge')
    assert stat.S_IMODE(victim.stat().st_mode) == 0o644
    big = tmp_path / 'big.json'
    big.write_text(json.dumps({'b': 'x' * 100_000}))
    os.chmod(big, 0o644)
    with pytest.raises(CredentialsError, match='more than'):
        load_username(big, 'b')
    assert stat.S_IMODE(big.stat().st_mode) == 0o644
    wrong = tmp_path / 'wrong.json'
    wrong.write_text(json.dumps({'b': {'username': 5}}))
    with pytest.raises(CredentialsError, match='not a key record'):
        load_username(wrong, 'b')


@pytest.mark.parametrize('special', ['/dev/zero', 'fifo', 'folder'])
def test_item06_special_files_are_refused_without_reading(tmp_path, special):
    if special == 'fifo':
        path = tmp_path / 'fifo'
        os.mkfifo(path)
    elif special == 'folder':
        path = tmp_path / 'folder'
        path.mkdir()
    else:
        path = special
    done = threading.Event()
    errors = []

    def attempt():
        for load in (lambda: load_username(path, 'b'), lambda: load_colors(path)):
            try:
                load()
            except (CredentialsError, ColorConfigError) as exc:
                errors.append(str(exc))
        done.set()

    threading.Thread(target=attempt, daemon=True).start()
    assert done.wait(10), 'reading a special file blocked or ran away'
    assert len(errors) == 2 and all('not a regular file' in e for e in errors), errors


def test_item06_colors_file_too_large_is_refused(tmp_path):
    big = tmp_path / 'colors.yaml'
    big.write_text('#' * (2 * 1024 * 1024))
    with pytest.raises(ColorConfigError, match='more than'):
        load_colors(big)


def test_item06_pairing_never_writes_through_a_planted_symlink(tmp_path):
    folder = tmp_path / 'cfg'
    folder.mkdir(mode=0o700)
    victim = _victim(tmp_path)
    path = folder / 'hue_username.json'
    old_tmp = path.with_name(path.name + '.tmp')               # the fixed name the seed wrote through
    old_tmp.symlink_to(victim)
    store_username(path, 'bridge', 'secret-key-1')
    assert victim.read_text() == 'not yours to chmod\n' and stat.S_IMODE(victim.stat().st_mode) == 0o644
    assert load_username(path, 'bridge') == 'secret-key-1'
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.unlink()
    path.symlink_to(victim)                                    # the key file itself planted as a symlink
    with pytest.raises(CredentialsError, match='symlink'):
        store_username(path, 'bridge', 'secret-key-2')
    assert victim.read_text() == 'not yours to chmod\n'


def test_item06_key_folder_open_to_others_is_refused(tmp_path):
    folder = tmp_path / 'shared'
    folder.mkdir()
    os.chmod(folder, 0o777)
    with pytest.raises(CredentialsError, match='writable by others'):
        store_username(folder / 'k.json', 'bridge', 'secret-key')
    assert list(folder.iterdir()) == []


def test_v2_record_keeps_key_client_key_id_and_pin_together_and_reads_the_v1_format(tmp_path):
    path = tmp_path / 'cfg' / 'hue_username.json'
    path.parent.mkdir(mode=0o700)
    path.write_text(json.dumps({'10.0.0.2': 'old-v1-user'}))
    os.chmod(path, 0o600)
    rec = BridgeCredentials('app-key', 'CLIENTKEY', '001788fffe4a5b6c', 'ab' * 32, 'v2')
    store_credentials(path, '10.0.0.3', rec)
    assert load_credentials(path, '10.0.0.3') == rec
    assert load_credentials(path, '10.0.0.2') == BridgeCredentials('old-v1-user')
    assert json.loads(path.read_text())['10.0.0.3'] == {'username': 'app-key', 'clientkey': 'CLIENTKEY',
                                                        'bridge_id': '001788fffe4a5b6c', 'cert_sha256': 'ab' * 32,
                                                        'api': 'v2'}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ['hue_username.json']    # no temporary file left


@pytest.mark.skipif(os.geteuid() != 0, reason='needs root to make a file owned by another user')
def test_item06_key_file_of_another_user_is_refused_untouched(tmp_path):
    path = tmp_path / 'k.json'
    path.write_text(json.dumps({'b': 'someone-elses-key'}))
    os.chmod(path, 0o644)
    os.chown(path, 65534, 65534)
    with pytest.raises(CredentialsError, match='belongs to uid 65534'):
        load_username(path, 'b')
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
