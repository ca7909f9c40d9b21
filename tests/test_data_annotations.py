"""The two WIDER FACE annotation text formats parse into mmdet instances, and bad lines are named."""

from __future__ import annotations

import numpy as np
import pytest

from scrfd_search.data.annotations import parse_retinaface_txt, parse_wider_txt
from scrfd_search.errors import UserError

OFFICIAL = """\
0--Parade/0_Parade_a.jpg
2
10 20 30 40 0 0 0 0 0 0
5 5 8 9 2 0 0 1 0 0
0--Parade/0_Parade_empty.jpg
0
0 0 0 0 0 0 0 0 0 0
1--Handshaking/1_Handshaking_b.jpg
1
100 50 4 3 0 0 0 0 0 0
"""

LABELV2 = """\
# 0--Parade/0_Parade_a.jpg 640 480
10 20 40 60 15.0 30.0 0.0 35.0 30.0 0.0 25.0 40.0 0.0 18.0 50.0 0.0 32.0 50.0 0.0
50 60 70 90 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0
1 2 3 4 1
5 6 20 30 0
# 0--Parade/0_Parade_empty.jpg 320 200
"""


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_official_format_boxes_invalid_and_empty_images(tmp_path):
    records = parse_wider_txt(write(tmp_path, "gt.txt", OFFICIAL))
    assert [r.name for r in records] == [
        "0--Parade/0_Parade_a.jpg",
        "0--Parade/0_Parade_empty.jpg",
        "1--Handshaking/1_Handshaking_b.jpg",
    ]
    first = records[0]
    assert first.width is None and first.height is None  # the official format has no image size
    assert first.instances[0]["bbox"] == [10, 20, 40, 60]  # x y w h -> x1 y1 x2 y2
    assert [i["ignore_flag"] for i in first.instances] == [0, 1]  # invalid face kept, ignored
    assert all(i["bbox_label"] == 0 for i in first.instances)
    assert first.instances[0]["keypoints"].shape == (5, 3) and not first.instances[0]["keypoints"].any()
    assert records[1].instances == []
    assert records[2].line == 8


def test_official_min_size_ignores_small_faces(tmp_path):
    records = parse_wider_txt(write(tmp_path, "gt.txt", OFFICIAL), min_size=5)
    assert records[2].instances[0]["ignore_flag"] == 1  # 4 x 3 face
    assert records[0].instances[0]["ignore_flag"] == 0


@pytest.mark.parametrize(
    ("text", "where", "what"),
    [
        ("0--Parade/a.jpg\n1\n10 20 30 40 0 0 0 0\n", ":3:", "expected 10 numbers"),
        ("0--Parade/a.jpg\ntwo\n", ":2:", "expected the number of faces"),
        ("0--Parade/a.jpg\n2\n10 20 30 40 0 0 0 0 0 0\n", ":2:", "face count of 2 but only 1 face line"),
        ("0--Parade/a.jpg\n1\n10 20 x 40 0 0 0 0 0 0\n", ":3:", "expected 10 numbers"),
        ("1 2 3\n", ":1:", "expected an image path"),
    ],
)
def test_official_malformed_line_names_file_and_line(tmp_path, text, where, what):
    path = write(tmp_path, "bad.txt", text)
    with pytest.raises(UserError) as err:
        parse_wider_txt(path)
    message = str(err.value)
    assert f"{path}{where}" in message and what in message
    assert "\n" not in message


def test_labelv2_landmarks_ignore_flags_and_sizes(tmp_path):
    records = parse_retinaface_txt(write(tmp_path, "labelv2.txt", LABELV2))
    assert [(r.name, r.width, r.height) for r in records] == [
        ("0--Parade/0_Parade_a.jpg", 640, 480),
        ("0--Parade/0_Parade_empty.jpg", 320, 200),
    ]
    faces = records[0].instances
    assert [f["ignore_flag"] for f in faces] == [0, 0, 1, 0]
    np.testing.assert_allclose(faces[0]["keypoints"][:, :2], [[15, 30], [35, 30], [25, 40], [18, 50], [32, 50]])
    assert faces[0]["keypoints"][:, 2].tolist() == [1, 1, 1, 1, 1]
    assert not faces[1]["keypoints"].any()  # -1 everywhere: absent, zeros and invisible
    assert faces[0]["keypoints"].dtype == np.float32
    assert records[1].instances == []


@pytest.mark.parametrize(
    ("text", "line", "what"),
    [
        ("10 20 30 40\n", 1, "before face lines"),
        ("# a.jpg 10 10\n1 2 3 4 5 6\n", 2, "expected 4, 5 or 19 numbers"),
        ("# a.jpg ten 10\n", 1, "integer image width and height"),
        ("# a.jpg 10 10\n1 2 nan 4\n", 2, "finite"),
    ],
)
def test_labelv2_malformed_line_names_file_and_line(tmp_path, text, line, what):
    path = write(tmp_path, "labelv2.txt", text)
    with pytest.raises(UserError, match=what) as err:
        parse_retinaface_txt(path)
    assert f"{path}:{line}:" in str(err.value)


def test_missing_annotation_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="annotation file not found"):
        parse_wider_txt(tmp_path / "nope.txt")
