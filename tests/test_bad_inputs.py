"""Bad input found by trying the commands as a new user would: each gives one clear line, exit 2, and
leaves nothing new behind (the cases of issue 10 that used to give a traceback or pass silently)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from search_helpers import DEMO, STEP1_SPACE, TINY_ARCH

from scrfd_search.cli import main
from scrfd_search.data.annotations import parse_retinaface_txt, parse_wider_txt
from scrfd_search.errors import UserError
from scrfd_search.evaluation.predictions import read_prediction_file


def first_train_image(data: Path) -> Path:
    """The path of the first image the train annotations list."""
    record = parse_wider_txt(data / "wider_face_split" / "wider_face_train_bbx_gt.txt")[0]
    return data / "WIDER_train" / "images" / record.name


def error_line(capsys, command: str, argv: list[str], *needles: str) -> str:
    """Run the command; assert exit 2 and one `scrfd-search COMMAND: error:` line holding every needle."""
    code = main([command, *argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith(f"scrfd-search {command}: error: "), err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


def test_binary_space_and_arch_files_are_one_line(tmp_path, capsys):
    blob = tmp_path / "blob.bin"
    blob.write_bytes(bytes(range(256)) * 4)
    error_line(capsys, "sample", ["--space", str(blob), "--n", "1"], str(blob), "not a text file")
    error_line(capsys, "flops", [str(blob.rename(tmp_path / "blob.json"))], "blob.json", "not a text file")


def test_a_negative_seed_is_one_line(capsys, tmp_path, demo_data):
    error_line(capsys, "sample", ["--space", str(STEP1_SPACE), "--n", "1", "--seed", "-1"], "--seed", "-1")
    error_line(capsys, "demo-data", ["--out", str(tmp_path / "d"), "--seed", "-1"], "--seed", "-1")
    error_line(capsys, "data-stats", ["--data", str(demo_data), "--seed", "-1"], "--seed", "-1")
    error_line(capsys, "train", [*train_args(tmp_path, demo_data), "--seed", "-1"], "--seed", "-1")
    launch = [
        "--space",
        str(STEP1_SPACE),
        "--data",
        str(demo_data),
        "--name",
        "x",
        "--results-dir",
        str(tmp_path / "r"),
    ]
    error_line(capsys, "launch", [*launch, "--seed", str(2**32)], "--seed", str(2**32))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["arch.json"]


def test_outputs_under_a_file_are_refused_before_any_work(tmp_path, capsys, demo_data):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    under = a_file / "out"
    error_line(capsys, "sample", ["--space", str(STEP1_SPACE), "--n", "1", "--out", str(under)], "--out", "is a file")
    error_line(capsys, "demo-data", ["--out", str(under), "--train", "2", "--val", "1"], "--out", "is a file")
    error_line(capsys, "export", ["--arch", str(write_arch(tmp_path)), "--out", str(under)], "--out", "is a file")
    error_line(
        capsys, "data-stats", ["--data", str(demo_data), "--num-images", "2", "--plot", str(under / "f.png")], "--plot"
    )
    error_line(capsys, "train", [*train_args(tmp_path, demo_data), "--work-dir", str(under)], "--work-dir", "is a file")
    error_line(
        capsys,
        "launch",
        ["--space", str(STEP1_SPACE), "--data", str(demo_data), "--name", "x", "--results-dir", str(under)],
        "--results-dir",
        "is a file",
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["arch.json", "file"]


def write_arch(tmp_path: Path) -> Path:
    """TINY_ARCH as an ArchSpec file."""
    path = tmp_path / "arch.json"
    path.write_text(TINY_ARCH.to_json())
    return path


def train_args(tmp_path: Path, data: Path) -> list[str]:
    """A 1-epoch, 64 px train command line (without --work-dir)."""
    args = ["--arch", str(write_arch(tmp_path)), "--data", str(data), "--epochs", "1", "--img-size", "64"]
    return [*args, "--batch-size", "4", "--workers", "0", "--device", "cpu"]


@pytest.mark.parametrize("damage", ["corrupt", "missing", "empty"])
def test_unreadable_images_are_refused_before_anything_starts(demo_copy, tmp_path, capsys, damage):
    data = demo_copy
    image = first_train_image(data)
    original = image.read_bytes()
    image.unlink()  # the shared demo folder may share files with the copy: never write through them
    if damage == "corrupt":
        image.write_bytes(original[:200] + b"\0" * (len(original) - 200))
    elif damage == "empty":
        image.write_bytes(b"")
    why = {"corrupt": "cannot be decoded", "missing": "missing", "empty": "empty file"}[damage]
    work = tmp_path / "work"
    error_line(
        capsys,
        "train",
        [*train_args(tmp_path, data), "--work-dir", str(work)],
        image.name,
        why,
        f"1 of {DEMO.num_train}",
    )
    assert not work.exists()
    error_line(capsys, "data-stats", ["--data", str(data), "--num-images", "2"], image.name, why)
    results = tmp_path / "results"
    error_line(
        capsys,
        "launch",
        ["--space", str(STEP1_SPACE), "--data", str(data), "--name", "x", "--results-dir", str(results)],
        image.name,
        why,
    )
    assert not (results / "x").exists()


def test_a_malformed_annotation_stops_launch_before_any_trial(demo_copy, tmp_path, capsys):
    data = demo_copy
    ann = data / "wider_face_split" / "wider_face_val_bbx_gt.txt"
    lines = ann.read_text().splitlines()
    lines[2] = "10 20 thirty 40 0 0 0 0 0 0"
    ann.unlink()
    ann.write_text("\n".join(lines) + "\n")
    results = tmp_path / "results"
    argv = ["--space", str(STEP1_SPACE), "--data", str(data), "--name", "x", "--results-dir", str(results)]
    error_line(capsys, "launch", argv, f"{ann}:3", "thirty")
    assert not (results / "x").exists()


def test_negative_box_sizes_are_rejected_naming_the_line(tmp_path):
    wider = tmp_path / "gt.txt"
    wider.write_text("0--a/1.jpg\n1\n10 10 -5 8 0 0 0 0 0 0\n")
    with pytest.raises(UserError, match=r"gt.txt:3: .* 0 or more, got -5 x 8"):
        parse_wider_txt(wider)
    label = tmp_path / "labelv2.txt"
    label.write_text("# a.jpg 100 100\n50 10 40 30\n")
    with pytest.raises(UserError, match=r"labelv2.txt:2: .* 0 or more"):
        parse_retinaface_txt(label)
    pred = tmp_path / "1.txt"
    pred.write_text("1\n2\n1 2 3 4 0.9\n5 6 -7 8 0.5\n")
    with pytest.raises(UserError, match=r"1.txt:4: expected a box width and height of 0 or more"):
        read_prediction_file(pred)
    zero = tmp_path / "zero.txt"
    zero.write_text("0--a/1.jpg\n1\n10 10 0 8 0 0 0 1 0 0\n")  # zero-size faces exist in WIDER FACE: ignored
    assert parse_wider_txt(zero)[0].instances[0]["ignore_flag"] == 1


def test_a_face_count_too_high_names_the_count_line(tmp_path):
    wider = tmp_path / "gt.txt"
    wider.write_text("0--a/1.jpg\n3\n1 1 5 5 0 0 0 0 0 0\n0--a/2.jpg\n1\n1 1 5 5 0 0 0 0 0 0\n")
    with pytest.raises(UserError, match=r"gt.txt:2: 0--a/1.jpg has a face count of 3 but only 1 face line"):
        parse_wider_txt(wider)


def test_train_refuses_a_finished_or_unrelated_work_dir_without_force(demo_data, tmp_path, capsys):
    finished = tmp_path / "finished"
    finished.mkdir()
    (finished / "result.json").write_text(json.dumps({"hard": 0.5}))
    error_line(
        capsys, "train", [*train_args(tmp_path, demo_data), "--work-dir", str(finished)], "finished run", "--force"
    )
    assert json.loads((finished / "result.json").read_text()) == {"hard": 0.5}
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    error_line(capsys, "train", [*train_args(tmp_path, demo_data), "--work-dir", str(other)], "not empty", "--force")
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"]


def test_plot_refuses_an_unrelated_non_empty_folder(tmp_path, capsys):
    from search_helpers import make_store, step1_rows

    _, rows = step1_rows(3)
    make_store(tmp_path, "s1", rows)
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("x")
    argv = ["s1", "--results-dir", str(tmp_path), "--out", str(out)]
    error_line(capsys, "plot", argv, "thesis.tex", "--force")
    assert sorted(p.name for p in out.iterdir()) == ["thesis.tex"]
    assert main(["plot", *argv, "--force"]) == 0
    capsys.readouterr()
    assert (out / "edf_hard_ap.png").is_file()
    assert main(["plot", *argv[:-2], "--out", str(tmp_path / "fresh")]) == 0  # its own figures: rewritten freely
    assert main(["plot", *argv[:-2], "--out", str(tmp_path / "fresh")]) == 0
    assert np.all([p.suffix in (".png", ".csv") for p in (tmp_path / "fresh").iterdir()])


def test_an_immutable_folder_is_refused_before_any_work(tmp_path, capsys, demo_data):
    locked = tmp_path / "locked"
    locked.mkdir()
    if subprocess.run(["chattr", "+i", str(locked)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not permitted here")
    try:
        sample = ["--space", str(STEP1_SPACE), "--n", "1", "--out", str(locked / "c")]
        error_line(capsys, "sample", sample, "--out", "cannot write in", str(locked))
        error_line(capsys, "demo-data", ["--out", str(locked / "d"), "--train", "2", "--val", "1"], "cannot write in")
        launch = ["--space", str(STEP1_SPACE), "--data", str(demo_data), "--name", "x", "--results-dir", str(locked)]
        error_line(capsys, "launch", launch, "--results-dir", "cannot write in")
        error_line(
            capsys, "train", [*train_args(tmp_path, demo_data), "--work-dir", str(locked / "w")], "cannot write in"
        )
        assert list(locked.iterdir()) == []
    finally:
        subprocess.run(["chattr", "-i", str(locked)], check=True)
