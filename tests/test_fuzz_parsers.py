"""Property-based fuzzing of every parser of user files: any bytes give a result or one UserError.

Each parser gets raw byte strings and, to reach past the first check, text built from the format's own
pieces (number lines, path lines, JSON values with the right keys). A parser passes when it returns or
raises the project's UserError with a one-line message naming the file; anything else (a traceback)
fails. Hypothesis runs derandomized (a fixed seed per test), so a CI run is reproducible.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from search_helpers import STEP1_SPACE

from scrfd_search.data.annotations import parse_retinaface_txt, parse_wider_txt
from scrfd_search.errors import UserError
from scrfd_search.evaluation.predictions import read_prediction_file
from scrfd_search.search.experiment import read_experiment_file
from scrfd_search.search.store import ExperimentStore
from scrfd_search.space.arch import ArchSpec
from scrfd_search.space.search_space import SearchSpace

EXAMPLES = 300
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,  # derandomized: nothing to replay, so no .hypothesis/ folder in the checkout
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

numbers = st.one_of(
    st.integers(-5, 2000).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["0", "-1", "1e309", "nan", "x", "", "1.5"]),
)
number_lines = st.lists(numbers, min_size=0, max_size=21).map(" ".join)
path_lines = st.sampled_from(["0--Parade/0_Parade_1.jpg", "a.png", "# 0--Parade/1.jpg 640 480", "#", "# a.jpg x y"])
format_text = st.lists(st.one_of(number_lines, path_lines, st.text(max_size=20)), max_size=30).map("\n".join)
any_input = st.one_of(st.binary(max_size=400), format_text.map(lambda t: t.encode("utf-8", "surrogatepass")))


def json_like(keys: list[str]) -> st.SearchStrategy[Any]:
    """JSON values shaped like the file: objects with the format's keys holding any JSON value."""
    leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=10))
    value = st.recursive(
        leaf,
        lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=6), kids, max_size=4),
        max_leaves=12,
    )
    return st.one_of(value, st.fixed_dictionaries({}, optional={k: value for k in keys}))


def check(parse: Callable[[Path], Any], data: bytes, name: str) -> None:
    """parse(file holding data) returns, or raises a one-line UserError naming the file."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        try:
            parse(path)
        except UserError as exc:
            message = str(exc)
            assert "\n" not in message and str(path) in message, message


@FUZZ
@given(any_input)
def test_wider_txt(data):
    check(parse_wider_txt, data, "wider_face_train_bbx_gt.txt")


@FUZZ
@given(any_input)
def test_labelv2(data):
    check(parse_retinaface_txt, data, "labelv2.txt")


@FUZZ
@given(any_input)
def test_prediction_file(data):
    check(read_prediction_file, data, "0_Parade_1.txt")


space_keys = list(json.loads(json.dumps(SearchSpace.load(STEP1_SPACE).to_dict())))


@FUZZ
@given(st.one_of(any_input, json_like(space_keys).map(lambda v: json.dumps(v).encode())))
def test_search_space_yaml(data):
    check(SearchSpace.load, data, "space.yaml")


@FUZZ
@given(
    st.one_of(
        any_input, json_like(["block", "stem_width", "stages", "neck", "head"]).map(lambda v: json.dumps(v).encode())
    )
)
def test_archspec_json(data):
    check(ArchSpec.load, data, "arch.json")


experiment_keys = [
    "version",
    "name",
    "step",
    "trials",
    "epochs",
    "space_file",
    "data_root",
    "searcher",
    "scheduler",
    "budget_gflops",
    "tolerance",
    "constraint",
    "space",
    "lr",
    "seed",
    "img_size",
    "gpus_per_trial",
]


@FUZZ
@given(st.one_of(any_input, json_like(experiment_keys).map(lambda v: json.dumps(v).encode())))
def test_experiment_json(data):
    check(read_experiment_file, data, "experiment.json")


@FUZZ
@given(
    st.one_of(
        any_input,
        json_like(["trials"]).map(lambda v: json.dumps(v).encode()),
        st.lists(json_like(["trial_id", "state", "arch", "flops", "hard", "epochs_run", "extra"]), max_size=3).map(
            lambda rows: json.dumps({"trials": rows}).encode()
        ),
    )
)
def test_leaderboard_json(data):
    check(lambda path: ExperimentStore(path.parent).read_trials(), data, "leaderboard.json")
