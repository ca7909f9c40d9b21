"""A cluster node that does not see the driver's results folder is found before any trial starts.

Ray's test cluster runs its nodes on this machine, so they share its files. One more node is started
here with `ray start` inside its own mount namespace (`unshare --mount`), where an empty tmpfs hides
the results folder: to its Ray workers that folder is another disk, as on a node without the NFS mount.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from search_helpers import STEP1_SPACE, cli

from scrfd_search.data.demo import DemoConfig, write_demo_dataset

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_auth_off")]
NODES_SCRIPT = """
import sys, time, ray
ray.init(address=sys.argv[1], logging_level="ERROR")
deadline = time.time() + 180
while time.time() < deadline:
    alive = [n for n in ray.nodes() if n["Alive"]]
    if len(alive) >= int(sys.argv[2]):
        print(" ".join(n["NodeID"] for n in alive))
        break
    time.sleep(1)
"""


def can_unshare_mounts() -> bool:
    """Whether this machine lets us make a private mount namespace (root, or user namespaces)."""
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True)
    return probe.returncode == 0


def alive_nodes(address: str, count: int) -> list[str]:
    """The ids of the cluster's alive nodes once there are `count` of them."""
    done = subprocess.run([sys.executable, "-c", NODES_SCRIPT, address, str(count)], capture_output=True, text=True)
    ids = done.stdout.split()
    assert len(ids) >= count, done.stderr[-2000:]
    return ids


@pytest.fixture
def cluster_and_hidden_node(tmp_path: Path) -> Iterator[tuple[str, Path, Callable[[], str]]]:
    """(head address, results folder, start_hidden_node): the head shares this machine's files; the node
    start_hidden_node() adds (returning its id) sees an empty tmpfs at the results folder."""
    if not can_unshare_mounts():
        pytest.skip("needs `unshare --mount` (root or user namespaces) to give one node its own results folder")
    from ray.cluster_utils import Cluster

    results = tmp_path / "results"
    results.mkdir()
    cluster = Cluster(initialize_head=True, connect=False, head_node_args={"num_cpus": 2, "include_dashboard": False})
    hidden: list[subprocess.Popen] = []

    def start_hidden_node() -> str:
        ray_start = f"{sys.executable} -m ray.scripts.scripts start --address {cluster.address} --num-cpus 1 --block"
        script = f"mount -t tmpfs tmpfs {results} && exec {ray_start}"
        hidden.append(
            subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                env={**os.environ, "RAY_AUTH_MODE": "disabled"},
            )
        )
        head = set(alive_nodes(cluster.address, 1))
        return next(n for n in alive_nodes(cluster.address, 2) if n not in head)

    try:
        yield cluster.address, results, start_hidden_node
    finally:
        for proc in hidden:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=30)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(proc.pid, signal.SIGKILL)
        cluster.shutdown()


def test_a_node_without_the_results_folder_is_named_and_nothing_starts(cluster_and_hidden_node, tmp_path: Path) -> None:
    address, results, start_hidden_node = cluster_and_hidden_node
    data = tmp_path / "demo"
    write_demo_dataset(data, DemoConfig(num_train=2, num_val=2, seed=1, min_width=64, max_width=96))
    shared = cli("doctor", "--address", address, "--results-dir", str(results))
    row = next(line for line in shared.stdout.splitlines() if line.startswith("shared storage"))
    assert " ok " in row and f"--results-dir {results}" in row, shared.stdout

    node = start_hidden_node()
    time.sleep(1)
    doctor = cli("doctor", "--address", address, "--results-dir", str(results))
    row = next(line for line in doctor.stdout.splitlines() if line.startswith("shared storage"))
    assert " fail " in row and f"({node[:8]})" in row and "cannot read it" in row, doctor.stdout

    launch = cli(
        "launch", "--space", str(STEP1_SPACE), "--name", "split", "--data", str(data), "--results-dir", str(results),
        "--trials", "1", "--epochs", "1", "--img-size", "64", "--gpus-per-trial", "0", "--address", address,
    )  # fmt: skip
    assert launch.returncode == 2
    last = launch.stderr.strip().splitlines()[-1]
    assert last.startswith(f"scrfd-search launch: error: --results-dir {results}: not the same folder on Ray node ")
    assert f"({node[:8]})" in last and "nothing was started" in last
    assert list(results.iterdir()) == []  # no store, no probe left behind
