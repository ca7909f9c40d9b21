"""Before any trial on a cluster: check that every node sees the same results and data folders.

Ray Tune needs storage that every node shares for a multi-node run (NFS or cloud storage, its docs
say), and the trials here write checkpoints and result.json into the results folder and read the data
folder. The driver writes a probe file with a random token into each folder (the nearest existing
folder on the way, so nothing is created), and a Ray task pinned to each alive node reads it back.
A folder the driver cannot write into (a read-only data mount) is compared by a fingerprint instead:
the names and sizes of its entries two levels down. The probes are removed afterwards.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from scrfd_search.errors import UserError
from scrfd_search.search.settings import SearchSettings

PROBE_PREFIX = ".scrfd-search-shared-"
ANSWER_TIMEOUT_S = 120.0
FINGERPRINT_DEPTH = 2


@dataclass(frozen=True)
class Probe:
    """What one node must find: `expected` read from `path` (a probe file), or as the folder's fingerprint."""

    flag: str
    folder: str
    path: str
    expected: str
    fingerprint: bool


def nearest_folder(path: str | os.PathLike) -> Path:
    """The folder itself, or the nearest existing folder above it."""
    target = Path(path).expanduser().absolute()
    return next(p for p in (target, *target.parents) if p.is_dir())


def fingerprint(folder: str | os.PathLike) -> str:
    """sha256 of the names and sizes of the entries FINGERPRINT_DEPTH levels down ('' when it is missing)."""
    root = Path(folder)
    if not root.is_dir():
        return ""
    digest = hashlib.sha256()
    level = [root]
    for _ in range(FINGERPRINT_DEPTH):
        nxt = []
        for parent in level:
            for entry in sorted(parent.iterdir()):
                size = entry.stat().st_size if entry.is_file() else -1
                digest.update(f"{entry.relative_to(root)}\0{size}\n".encode())
                if entry.is_dir():
                    nxt.append(entry)
        level = nxt
    return digest.hexdigest()


def read_probe(probe: Probe) -> str:
    """What this machine finds for a probe: the file's text, the fingerprint, or why it cannot read it."""
    if probe.fingerprint:
        return fingerprint(probe.path)
    try:
        return Path(probe.path).read_text()
    except OSError as exc:
        return f"cannot read it: {exc.strerror or type(exc).__name__}"


@ray.remote(num_cpus=0)
def _read_on_node(probes: list[Probe]) -> list[str]:
    """The Ray task run on each node."""
    return [read_probe(p) for p in probes]


@contextlib.contextmanager
def written_probes(folders: dict[str, str]) -> Iterator[list[Probe]]:
    """A probe per folder (flag -> folder), removed when the block ends."""
    probes, files = [], []
    try:
        for flag, folder in folders.items():
            base = nearest_folder(folder)
            token = secrets.token_hex(16)
            try:
                fd, name = tempfile.mkstemp(prefix=PROBE_PREFIX, dir=base)
            except OSError:  # read-only (a data mount): compare what is there instead
                probes.append(Probe(flag, folder, str(base), fingerprint(base), True))
                continue
            files.append(name)
            with os.fdopen(fd, "w") as f:
                f.write(token)
            probes.append(Probe(flag, folder, name, token, False))
        yield probes
    finally:
        for name in files:
            Path(name).unlink(missing_ok=True)


def check_shared_storage(folders: dict[str, str]) -> None:
    """Refuse (one UserError naming the node) when an alive node of the joined cluster does not see the
    driver's folders (flag -> path); call after ray.init and before any trial."""
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    with written_probes(folders) as probes:
        refs = [
            _read_on_node.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(
                probes
            )
            for n in nodes
        ]
        try:
            answers = ray.get(refs, timeout=ANSWER_TIMEOUT_S)
        except ray.exceptions.GetTimeoutError:
            raise UserError(
                f"a Ray node did not answer the shared-storage check within {ANSWER_TIMEOUT_S:g} s "
                "(`ray status` shows its state); nothing was started"
            ) from None
    for node, found in zip(nodes, answers, strict=True):
        for probe, value in zip(probes, found, strict=True):
            if value != probe.expected:
                raise UserError(mismatch_text(probe, node, value))


def mismatch_text(probe: Probe, node: dict, found: str) -> str:
    """The one line that names the folder, the node and what it saw instead."""
    where = f"Ray node {node.get('NodeManagerAddress', '?')} ({str(node.get('NodeID', '?'))[:8]})"
    if probe.fingerprint:
        seen = "does not see it" if not found else "sees different contents there"
    else:
        seen = found if found.startswith("cannot read") else "reads other contents there"
        seen = f"{seen} (a file this driver wrote in {Path(probe.path).parent})"
    return (
        f"{probe.flag} {probe.folder}: not the same folder on {where}: it {seen}; every node must share the "
        "results and data folders (NFS or similar: Ray Tune needs shared storage across nodes); nothing was started"
    )


def check_search_storage(settings: SearchSettings) -> None:
    """check_shared_storage for a search's results and data folders (a cluster run only)."""
    if settings.address is not None:
        check_shared_storage({"--results-dir": settings.results_dir, "--data": settings.data_root})
