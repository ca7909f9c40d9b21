"""The image check's record: an unchanged data set is decoded once; a changed or removed image is checked again."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from scrfd_search.data.annotations import parse_wider_txt
from scrfd_search.data.demo import DemoConfig, write_demo_dataset
from scrfd_search.data.image_cache import CACHE_FILE, load_cache
from scrfd_search.data.preflight import check_split
from scrfd_search.errors import UserError
from scrfd_search.search.checks import check_data_contents


@pytest.fixture()
def data(tmp_path) -> Path:
    """A fresh small demo data set (each test damages its own)."""
    root = tmp_path / "demo"
    write_demo_dataset(root, DemoConfig(num_train=4, num_val=2, seed=0, min_width=96, max_width=128))
    return root


def train_images(data: Path) -> list[Path]:
    """The train images the annotations list."""
    records = parse_wider_txt(data / "wider_face_split" / "wider_face_train_bbx_gt.txt")
    return [data / "WIDER_train" / "images" / r.name for r in records]


def garbled_in_place(image: Path) -> None:
    """Overwrite the image with bytes that do not decode, keeping its size and modification time."""
    stat = image.stat()
    size = stat.st_size
    image.write_bytes(b"\0" * size)
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_an_unchanged_data_set_is_decoded_once(data):
    check_data_contents(data)
    cache = load_cache(data)
    assert (data / CACHE_FILE).is_file()
    assert cache.unchecked(train_images(data)) == []
    # an image damaged without any trace in its size or time is not decoded again: the record was trusted
    garbled_in_place(train_images(data)[0])
    check_data_contents(data)
    # without the record, the same check finds it
    with pytest.raises(UserError, match="cannot be decoded"):
        check_split(data, "train", "wider")


def test_a_changed_image_is_checked_again(data):
    check_data_contents(data)
    image = train_images(data)[1]
    image.write_bytes(b"\0" * 100)  # another size (and time): the record no longer vouches for it
    with pytest.raises(UserError, match=rf"1 of 4 listed images.*{image.name} \(cannot be decoded"):
        check_data_contents(data)
    with pytest.raises(UserError, match="cannot be decoded"):  # and the failure was not recorded as a pass
        check_data_contents(data)


def test_a_removed_image_fails_the_check(data):
    check_data_contents(data)
    image = train_images(data)[2]
    image.unlink()
    with pytest.raises(UserError, match=rf"{image.name} \(missing\)"):
        check_data_contents(data)


def test_a_read_only_data_folder_keeps_its_record_in_the_user_cache(data, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    data.chmod(0o555)
    try:
        if os.access(data, os.W_OK):
            pytest.skip("running as root: a read-only folder is still writable")
        check_data_contents(data)
        assert not (data / CACHE_FILE).exists()
        assert load_cache(data).file.parent == tmp_path / "cache" / "scrfd-search"
        assert load_cache(data).unchecked(train_images(data)) == []
    finally:
        data.chmod(0o755)


def test_an_image_missing_before_any_check_is_reported(data):
    image = train_images(data)[3]
    image.unlink()  # no record yet: a missing image and an unrecorded one must not look alike
    with pytest.raises(UserError, match=rf"{image.name} \(missing\)"):
        check_data_contents(data)
