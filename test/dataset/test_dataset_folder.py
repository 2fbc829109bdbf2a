"""FaceLabeler dataset folder: layout, atomic never-overwriting writes, resumed numbering, corrupt rows reported."""
import os

import numpy as np
import pytest

from emotion_ros.core.dataset import facelabeler as fd
from emotion_ros.core.dataset.facelabeler import DatasetError, DatasetWriter, UnknownLabel, scan


def face(value=128, shape=(48, 48)):
    return np.full(shape, value, np.uint8)


def test_new_folder_gets_facelabeler_layout_with_default_labels(tmp_path):
    w = DatasetWriter(tmp_path / 'ds')
    root = tmp_path / 'ds'
    assert (root / 'labelList.csv').read_text() == (
        '0,angry\n1,disgust\n2,fear\n3,happy\n4,sad\n5,surprise\n6,neutral\n')
    assert (root / 'faceLabels.csv').read_text() == '' and (root / 'Images').is_dir()
    assert w.labels == list(fd.DEFAULT_LABELS) and w.next_index == 0
    assert w.counts_dict() == dict.fromkeys(fd.DEFAULT_LABELS, 0)


def test_save_writes_file_then_row_in_facelabeler_format(tmp_path):
    w = DatasetWriter(tmp_path)
    assert w.save(face(10), 'happy') == 'Images/face0.png'
    assert w.save(face(20, (64, 64, 3)), 'Sad') == 'Images/face1.png'
    assert (tmp_path / 'faceLabels.csv').read_text() == 'face0.png,happy\nface1.png,sad\n'
    import cv2
    assert np.array_equal(cv2.imread(str(tmp_path / 'Images/face0.png'), cv2.IMREAD_UNCHANGED), face(10))
    assert cv2.imread(str(tmp_path / 'Images/face1.png'), cv2.IMREAD_UNCHANGED).shape == (64, 64, 3)
    assert w.counts['happy'] == 1 and w.counts['sad'] == 1
    assert not [p for p in (tmp_path / 'Images').iterdir() if p.name.startswith('.')]  # no temp file left
    s = scan(tmp_path)
    assert s.problems == [] and [r.filename for r in s.rows] == ['face0.png', 'face1.png']


def test_labels_resolve_case_and_synonyms_and_unknown_is_refused_with_the_list(tmp_path):
    (tmp_path / 'labelList.csv').write_text('0,Happy\n1,Sad\n2,Angry\n3,Neutral')  # FaceLabeler's own, no final \n
    w = DatasetWriter(tmp_path)
    assert w.resolve_label('happy') == 'Happy' and w.resolve_label('happiness') == 'Happy'
    assert w.resolve_label(' anger ') == 'Angry'
    with pytest.raises(UnknownLabel, match=r"unknown label 'hapy': labelList.csv has Happy, Sad, Angry, Neutral"):
        w.save(face(), 'hapy')
    assert (tmp_path / 'faceLabels.csv').read_text() == '' and not list((tmp_path / 'Images').iterdir())


def test_numbering_resumes_after_rows_and_after_files_without_rows(tmp_path):
    w = DatasetWriter(tmp_path)
    for _ in range(3):
        w.save(face(), 'fear')
    (tmp_path / 'Images' / 'face7.png').write_bytes(b'left by a crash before its row')
    w2 = DatasetWriter(tmp_path)
    assert w2.next_index == 8 and w2.counts['fear'] == 3
    assert w2.save(face(), 'fear') == 'Images/face8.png'
    assert 'Images/face7.png has no row in faceLabels.csv' in scan(tmp_path).problems


def test_existing_file_is_never_overwritten(tmp_path):
    w = DatasetWriter(tmp_path)
    (tmp_path / 'Images' / 'face0.png').write_bytes(b'someone else')  # appeared after the writer scanned
    assert w.save(face(), 'sad') == 'Images/face1.png'
    assert (tmp_path / 'Images' / 'face0.png').read_bytes() == b'someone else'
    with pytest.raises(FileExistsError):
        fd.write_new_file(tmp_path / 'Images' / 'face0.png', b'x')
    assert (tmp_path / 'Images' / 'face0.png').read_bytes() == b'someone else'


def test_row_is_appended_only_after_the_image_is_durable(tmp_path, monkeypatch):
    w = DatasetWriter(tmp_path)
    calls = []
    real_fsync = os.fsync
    monkeypatch.setattr(fd.os, 'fsync', lambda fd_: (calls.append(os.readlink(f'/proc/self/fd/{fd_}')),
                                                     real_fsync(fd_)))
    w.save(face(), 'happy')
    names = [os.path.basename(c) for c in calls]
    assert names[0].startswith('.face0.png.') and names[1] == 'Images' and names[-1] == 'faceLabels.csv'


def test_failed_image_write_leaves_no_row_and_no_temp_file(tmp_path, monkeypatch):
    w = DatasetWriter(tmp_path)

    def boom(*a):
        raise OSError(28, 'No space left on device')
    monkeypatch.setattr(fd.os, 'link', boom)
    with pytest.raises(OSError, match='No space'):
        w.save(face(), 'happy')
    assert (tmp_path / 'faceLabels.csv').read_text() == '' and not list((tmp_path / 'Images').iterdir())


def test_corrupt_rows_are_reported_not_fatal_and_appends_start_on_a_new_line(tmp_path):
    DatasetWriter(tmp_path)
    for n in (0, 1, 2):
        (tmp_path / 'Images' / f'face{n}.png').write_bytes(b'png')
    (tmp_path / 'faceLabels.csv').write_bytes(
        b'face0.png,happy\n'
        b'garbage-without-comma\n'
        b'face1.png,happy,extra\n'
        b'../../etc/passwd,sad\n'
        b'face0.png,sad\n'
        b'face9.png,sad\n'
        b'face2.png,grumpy\n'
        b'\x00\xff\xfe,\n'
        b'face1.png,ha')                      # torn last write: no newline
    s = scan(tmp_path)
    text = '\n'.join(s.problems)
    assert 'line 2: expected "filename,label"' in text and 'line 3: expected' in text
    assert "line 4: filename '../../etc/passwd' is outside Images/" in text
    assert 'line 5: face0.png already labelled on line 1' in text
    assert 'line 6: Images/face9.png does not exist' in text
    assert "line 7: label 'grumpy' is not in labelList.csv" in text
    assert 'line 8' in text
    assert [r.filename for r in s.rows_without_files] == ['face9.png']
    w = DatasetWriter(tmp_path)
    assert w.next_index == 10
    w.save(face(), 'happy')
    assert (tmp_path / 'faceLabels.csv').read_bytes().endswith(b'face1.png,ha\nface10.png,happy\n')
    assert w.counts['grumpy'] == 1 and w.counts['ha'] == 1 and w.counts['happy'] == 2


def test_label_list_problems_and_unusable_label_list(tmp_path):
    (tmp_path / 'labelList.csv').write_text('index,label\n0,happy\n1\n2,happy\n3,sad\n')
    w = DatasetWriter(tmp_path)
    assert w.labels == ['happy', 'sad']
    assert len(w.problems) == 3
    (tmp_path / 'labelList.csv').write_text('nonsense\n')
    with pytest.raises(DatasetError, match='no usable label'):
        DatasetWriter(tmp_path)


def test_stale_temp_files_of_dead_writers_are_removed(tmp_path):
    (tmp_path / 'Images').mkdir()
    stale = tmp_path / 'Images' / '.face3.png.999999999.tmp'
    mine = tmp_path / 'Images' / f'.face4.png.{os.getpid()}.tmp'
    stale.write_bytes(b'half')
    mine.write_bytes(b'half')
    w = DatasetWriter(tmp_path)
    assert w.removed_temp_files == [stale.name] and mine.exists() and w.next_index == 0
    assert scan(tmp_path).files_without_rows == []


def test_unwritable_folder_is_a_clear_error(tmp_path):
    (tmp_path / 'file').write_text('x')
    with pytest.raises(DatasetError, match='dataset folder'):
        DatasetWriter(tmp_path / 'file' / 'ds')
