"""tools/face_size_stats.py: the statistics the demo generator draws from are what the real ground truth gives."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REAL_GT = REPO.parent / "shared" / "widerface_gt"


@pytest.mark.skipif(not REAL_GT.is_dir(), reason=f"real WIDER FACE ground truth not found at {REAL_GT}")
def test_shipped_face_sizes_are_what_the_real_ground_truth_gives() -> None:
    spec = importlib.util.spec_from_file_location("face_size_stats", REPO / "tools" / "face_size_stats.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    stats = json.loads(json.dumps(tool.summarize(tool.load_faces(REAL_GT))))  # as the JSON file holds it
    shipped = json.loads((REPO / "scrfd_search" / "data" / "face_sizes.json").read_text())
    assert stats == shipped
    # the official keep lists go by height: 51, 31 and 11 px of 1,024 for easy, medium and hard
    assert {s: round(v * 1024) for s, v in stats["subset_min_relative_height"].items()} == {
        "easy": 51,
        "medium": 31,
        "hard": 11,
    }
    assert min(stats["subset_height_rule_agreement"].values()) > 0.97
