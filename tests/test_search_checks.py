"""`scrfd-search launch` refuses bad input before any trial starts: one line, exit 2, nothing written."""

from __future__ import annotations

from search_helpers import STEP1_SPACE, STEP2_SPACE, make_store, step1_rows

from scrfd_search.cli import main
from scrfd_search.search.checks import local_cpus


def launch(capsys, results, *argv: str) -> tuple[int, str]:
    """Run launch with a results dir; return (exit code, stderr) after checking stdout is empty."""
    code = main(["launch", "--results-dir", str(results), "--trials", "2", "--epochs", "1", *argv])
    out = capsys.readouterr()
    assert out.out == ""
    return code, out.err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    """Exit 2 with exactly one `scrfd-search launch: error:` line holding every needle."""
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("scrfd-search launch: error: "), err
    for needle in needles:
        assert needle in err, (needle, err)


def test_missing_data_folder(tmp_path, capsys):
    code, err = launch(capsys, tmp_path, "--space", str(STEP1_SPACE), "--data", str(tmp_path / "nope"), "--name", "a")
    assert_one_line_error(code, err, "--data", "nope", "no such folder")
    assert not (tmp_path / "a").exists()


def test_data_folder_without_the_layout(tmp_path, capsys, demo_data):
    broken = tmp_path / "broken"
    (broken / "WIDER_train" / "images").mkdir(parents=True)
    code, err = launch(capsys, tmp_path, "--space", str(STEP1_SPACE), "--data", str(broken), "--name", "a")
    assert_one_line_error(code, err, "--data", "missing wider_face_split/wider_face_train_bbx_gt.txt")


def test_bad_space_file(tmp_path, capsys, demo_data):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nblock: depthwise\nbudget_gflops: [1\n")
    code, err = launch(capsys, tmp_path, "--space", str(bad), "--data", str(demo_data), "--name", "a")
    assert_one_line_error(code, err, str(bad), "not valid YAML")
    code, err = launch(capsys, tmp_path, "--space", str(tmp_path / "x.yaml"), "--data", str(demo_data), "--name", "a")
    assert_one_line_error(code, err, "x.yaml", "no such search space file")
    assert not (tmp_path / "a").exists()


def test_too_many_cpus_or_gpus_per_trial(tmp_path, capsys, demo_data):
    base = ["--space", str(STEP1_SPACE), "--data", str(demo_data), "--name", "a"]
    code, err = launch(capsys, tmp_path, *base, "--cpus-per-trial", str(local_cpus() + 1))
    assert_one_line_error(code, err, "--cpus-per-trial", f"{local_cpus()} CPUs available")
    code, err = launch(capsys, tmp_path, *base, "--gpus-per-trial", "64")
    assert_one_line_error(code, err, "--gpus-per-trial", "available")
    assert not (tmp_path / "a").exists()


def test_existing_name_and_step_mismatches(tmp_path, capsys, demo_data):
    space, rows = step1_rows(3)
    make_store(tmp_path, "s1", [r.updated(state="ERROR", hard=None) for r in rows])
    data = ["--data", str(demo_data)]
    code, err = launch(capsys, tmp_path, "--space", str(STEP1_SPACE), *data, "--name", "s1")
    assert_one_line_error(code, err, "s1", "already holds a search", "resume s1")
    code, err = launch(capsys, tmp_path, "--space", str(STEP2_SPACE), *data, "--name", "s2")
    assert_one_line_error(code, err, "step-2 space needs --from")
    code, err = launch(capsys, tmp_path, "--space", str(STEP1_SPACE), *data, "--name", "s2", "--from", "s1")
    assert_one_line_error(code, err, "--from", "step-1 space")
    code, err = launch(capsys, tmp_path, "--space", str(STEP2_SPACE), *data, "--name", "s2", "--from", "s1")
    assert_one_line_error(code, err, "--from s1", "no finished trial")
    code, err = launch(capsys, tmp_path, "--space", str(STEP2_SPACE), *data, "--name", "s2", "--from", "zz")
    assert_one_line_error(code, err, "--from zz", "no experiment")
    assert not (tmp_path / "s2").exists()


def test_unreachable_cluster_address(tmp_path, capsys, demo_data):
    import socket

    with socket.socket() as s:  # a port nothing listens on: bind, read it, close
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = ["--space", str(STEP1_SPACE), "--data", str(demo_data), "--name", "a"]
    code, err = launch(capsys, tmp_path, *base, "--address", f"127.0.0.1:{port}")
    assert_one_line_error(code, err, f"--address 127.0.0.1:{port}", "nothing answers there")
    assert not (tmp_path / "a").exists()
