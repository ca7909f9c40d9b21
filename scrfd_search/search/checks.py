"""Checks run before any trial starts: data layout, search space, resources; one UserError each."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from scrfd_search.config_builder import widerface_data
from scrfd_search.data.preflight import check_split
from scrfd_search.errors import UserError
from scrfd_search.training.data_checks import check_data


def check_data_root(path: str | os.PathLike) -> Path:
    """The data folder, absolute, after checking the WIDER FACE layout is present (training.data_checks)."""
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise UserError(f"--data: {path}: no such folder (expected a WIDER FACE layout, see `demo-data`)")
    try:
        check_data(widerface_data(str(root)))
    except UserError as exc:
        raise UserError(f"--data: {exc}") from None
    return root


def check_data_contents(root: str | os.PathLike) -> None:
    """Parse both splits' annotations and decode every listed image that changed since it last passed."""
    for split in ("train", "val"):
        check_split(root, split, "wider", cached=True)


def local_cpus() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def local_gpus() -> int:
    """CUDA devices visible here (0 without a GPU or without CUDA-enabled torch)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def check_trial_resources(cpus_per_trial: float, gpus_per_trial: float, node_cpus: float, node_gpus: float) -> None:
    """Fail when one trial asks for more than the largest node has (it could never start)."""
    if cpus_per_trial <= 0:
        raise UserError(f"--cpus-per-trial: {cpus_per_trial} must be positive")
    if gpus_per_trial < 0:
        raise UserError(f"--gpus-per-trial: {gpus_per_trial} must be 0 or more")
    if cpus_per_trial > node_cpus:
        raise UserError(
            f"--cpus-per-trial: {cpus_per_trial:g} is more than the {node_cpus:g} CPUs available "
            f"(on the largest node); ask for at most {node_cpus:g}"
        )
    if gpus_per_trial > node_gpus:
        have = f"the largest node has {node_gpus:g} GPUs" if node_gpus else "no GPU is available"
        raise UserError(
            f"--gpus-per-trial: {gpus_per_trial:g} requested but {have} (a trial runs on one node); "
            f"ask for at most {node_gpus:g}"
        )
    if gpus_per_trial > 1 and gpus_per_trial != int(gpus_per_trial):
        raise UserError(f"--gpus-per-trial: {gpus_per_trial:g}: a fraction must be below 1 (or a whole number)")


def cluster_node_resources() -> tuple[float, float]:
    """(CPUs, GPUs) of the largest alive node of the connected Ray cluster."""
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    cpus = max((n["Resources"].get("CPU", 0.0) for n in nodes), default=0.0)
    gpus = max((n["Resources"].get("GPU", 0.0) for n in nodes), default=0.0)
    return cpus, gpus


def default_max_concurrent(total_cpus: float, total_gpus: float, cpus_per_trial: float, gpus_per_trial: float) -> int:
    """How many trials fit at once in the given resources (at least 1)."""
    fits = int(total_cpus // cpus_per_trial)
    if gpus_per_trial > 0:
        fits = min(fits, int(total_gpus // gpus_per_trial))
    return max(1, fits)


def check_address_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast when HOST:PORT does not accept connections (Ray itself retries for minutes)."""
    target = address.removeprefix("ray://")
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        return  # 'auto' and other forms Ray resolves itself
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise UserError(
            f"--address {address}: nothing answers there ({exc.strerror or exc}); "
            "start the cluster with `ray start --head` or check the address"
        ) from None
