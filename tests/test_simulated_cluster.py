"""A simulated DGX-1: Ray's own multi-node test cluster with fake GPUs, running real (tiny) searches.

`ray.cluster_utils.Cluster` starts real Ray nodes (raylets) on this machine that advertise GPUs they
do not have. Ray schedules trials onto them and sets CUDA_VISIBLE_DEVICES exactly as on a GPU
machine; torch finds no CUDA device, so every trial trains on the CPU and says so. Each trial records
where it runs (node, Ray's GPU ids, CUDA_VISIBLE_DEVICES) when it starts, then trains one epoch of
64 px images and validates: the records and the event times show which trials were in flight at once.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from search_helpers import SMALL_DEMO, STEP1_SPACE, CliResult, cli

from scrfd_search.search.store import ExperimentStore
from scrfd_search.search.trial import read_events

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_auth_off")]
TINY = ["--img-size", "64", "--batch-size", "2", "--epochs", "1", "--cpus-per-trial", "1"]


@pytest.fixture(scope="module")
def demo_data(demo_factory) -> Path:
    """4 training and 2 validation images, 64-96 px wide (SMALL_DEMO)."""
    return demo_factory(SMALL_DEMO)


def start_cluster(nodes: list[dict]) -> object:
    """A Ray test cluster: the first dict configures the head node, the others the added nodes.

    A Ray left connected in this process by an earlier test would be reused by the in-process launch
    (init_ray keeps a connected Ray), handing the trials to a cluster that is gone: disconnect first.
    """
    import ray
    from ray.cluster_utils import Cluster

    ray.shutdown()

    cluster = Cluster(initialize_head=True, connect=False, head_node_args={**nodes[0], "include_dashboard": False})
    for node in nodes[1:]:
        cluster.add_node(**node)
    return cluster


@pytest.fixture
def dgx1() -> Iterator[str]:
    """One node with 8 (fake) GPUs and 16 CPUs: a DGX-1's shape. Yields its address."""
    cluster = start_cluster([{"num_cpus": 16, "num_gpus": 8}])
    try:
        yield cluster.address
    finally:
        cluster.shutdown()


@pytest.fixture
def two_nodes() -> Iterator[str]:
    """Two nodes with 4 (fake) GPUs and 8 CPUs each. Yields the head's address."""
    cluster = start_cluster([{"num_cpus": 8, "num_gpus": 4}, {"num_cpus": 8, "num_gpus": 4}])
    try:
        yield cluster.address
    finally:
        cluster.shutdown()


def launch(address: str, data: Path, results: Path, name: str, trials: int, gpus: str) -> CliResult:
    """`scrfd-search launch` joining the cluster at address, run in this process (its driver leaves with it)."""
    return cli(
        "launch", "--space", str(STEP1_SPACE), "--name", name, "--data", str(data), "--results-dir", str(results),
        "--trials", str(trials), "--gpus-per-trial", gpus, "--address", address, *TINY,
    )  # fmt: skip


def placements(store: ExperimentStore) -> dict[str, tuple[dict, float, float]]:
    """Per trial: the placement it recorded at start, the start time and the end time."""
    out = {}
    for row in store.read_trials():
        events = read_events(store.path / row.extra["work_dir"])  # relative to the store
        start = next(e for e in events if e["event"] == "start")
        end = next(e for e in events if e["event"] == "end")
        out[row.trial_id] = (start["placement"], start["time"], end["time"])
    return out


def all_in_flight_together(found: dict[str, tuple[dict, float, float]]) -> bool:
    """Whether every trial had started before the first one finished."""
    return max(s for _, s, _ in found.values()) < min(e for _, _, e in found.values())


def status_of(results: Path, name: str) -> str:
    """`scrfd-search status NAME` output."""
    done = cli("status", name, "--results-dir", str(results))
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_one_gpu_per_trial_runs_eight_trials_each_on_its_own_gpu(dgx1: str, demo_data: Path, tmp_path: Path) -> None:
    start = time.time()
    done = launch(dgx1, demo_data, tmp_path, "dgx", trials=8, gpus="1")
    elapsed = time.time() - start
    assert done.returncode == 0, done.stderr[-3000:]
    store = ExperimentStore(tmp_path / "dgx")
    assert store.read_experiment().settings.max_concurrent == 8
    assert [r.state for r in store.read_trials()] == ["TERMINATED"] * 8
    found = placements(store)
    gpu_ids = [p["gpu_ids"] for p, _, _ in found.values()]
    assert all(len(ids) == 1 for ids in gpu_ids), gpu_ids
    assert sorted(ids[0] for ids in gpu_ids) == [str(i) for i in range(8)]  # eight distinct GPUs
    for placement, _, _ in found.values():
        assert placement["cuda_visible_devices"] == placement["gpu_ids"][0]
        # no real GPU behind the id: the trial says so and trains on the CPU
        assert placement["device"] == "cpu" and "torch sees no CUDA device" in placement["device_note"]
    assert len({p["node_id"] for p, _, _ in found.values()}) == 1
    assert all_in_flight_together(found), found
    text = status_of(tmp_path, "dgx")
    assert "where the trials ran" in text and "each trial: 1 CPUs (0 data-loader workers), 1 GPUs" in text
    for trial_id, (placement, _, _) in found.items():
        line = next(line for line in text.splitlines() if line.strip().startswith(trial_id) and " node " in line)
        assert f"GPU {placement['gpu_ids'][0]} " in line and "torch sees no CUDA device" in line
    print(f"8 trials on a simulated 8-GPU node: {elapsed:.1f}s")


def test_half_a_gpu_per_trial_packs_two_trials_on_each_gpu_of_two_nodes(
    two_nodes: str, demo_data: Path, tmp_path: Path
) -> None:
    start = time.time()
    done = launch(two_nodes, demo_data, tmp_path, "half", trials=16, gpus="0.5")
    elapsed = time.time() - start
    assert done.returncode == 0, done.stderr[-3000:]
    store = ExperimentStore(tmp_path / "half")
    assert store.read_experiment().settings.max_concurrent == 16
    assert [r.state for r in store.read_trials()] == ["TERMINATED"] * 16
    found = placements(store)
    assert all(len(p["gpu_ids"]) == 1 for p, _, _ in found.values())
    per_gpu = Counter((p["node_id"], p["gpu_ids"][0]) for p, _, _ in found.values())
    assert len({node for node, _ in per_gpu}) == 2  # both nodes used
    assert sorted(per_gpu.values()) == [2] * 8, per_gpu  # 8 GPUs, two trials on each
    assert all(p["cuda_visible_devices"] == p["gpu_ids"][0] for p, _, _ in found.values())
    assert all_in_flight_together(found), found
    print(f"16 trials at 0.5 GPU on two simulated 4-GPU nodes: {elapsed:.1f}s")


def test_more_gpus_per_trial_than_a_node_has_fails_before_anything_starts(
    two_nodes: str, demo_data: Path, tmp_path: Path
) -> None:
    done = launch(two_nodes, demo_data, tmp_path, "big", trials=2, gpus="5")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "scrfd-search launch: error: --gpus-per-trial: 5 requested but the largest node has 4 GPUs "
        "(a trial runs on one node); ask for at most 4"
    )
    assert not (tmp_path / "big").exists()
