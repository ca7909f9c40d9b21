"""What a training run leaves in its work dir, by name: the files others read to know how far it got."""

from __future__ import annotations

from pathlib import Path

RESULT_FILE = "result.json"  # written when a run trains to its end (training.candidate)
LAST_CHECKPOINT_FILE = "last_checkpoint"  # mmengine's marker naming the checkpoint it saved last
CANDIDATE_FILE = "candidate.json"  # what the run trains: arch, schedule length, image size, recipe


def has_checkpoint(work_dir: Path) -> bool:
    """Whether a run in work_dir saved an mmengine checkpoint that a later run can resume from."""
    return (work_dir / LAST_CHECKPOINT_FILE).is_file()
