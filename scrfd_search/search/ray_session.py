"""The driver's Ray: a private local instance or a joined cluster, its auth token, the cluster's resources."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from scrfd_search.errors import UserError
from scrfd_search.search.checks import cluster_node_resources, local_cpus, local_gpus
from scrfd_search.search.prepare import resolved_resources
from scrfd_search.search.settings import SearchSettings


def init_ray(address: str | None) -> None:
    """Start a local Ray (all local cores, no dashboard, quiet) or join the cluster at address."""
    import ray

    if ray.is_initialized():
        return
    if address is None:
        ray.init(
            # "local": a new Ray of our own. Without it ray.init() joins whatever Ray was started last on
            # this machine (another user's, a test cluster) and then refuses num_cpus/num_gpus.
            address="local",
            num_cpus=local_cpus(),
            num_gpus=local_gpus(),
            include_dashboard=False,
            logging_level=logging.ERROR,
            log_to_driver=False,
        )
        return
    try:
        ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
    except (ConnectionError, RuntimeError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"--address {address}: cannot join a Ray cluster there ({reason})") from None


def send_ray_auth_token() -> None:
    """Make this driver present Ray's auth token, when one exists and no auth mode was chosen.

    Ray reads the mode when it is imported: call this before the first `import ray`.

    Since Ray 2.59 `ray start --head` turns token authentication on by itself when a token exists
    (~/.ray/auth_token), but ray.init(address=...) sends it only with RAY_AUTH_MODE=token: without it
    joining such a cluster fails with InvalidAuthToken. Measured with Ray 2.60: token mode also joins a
    cluster started with RAY_AUTH_MODE=disabled, so turning it on is safe.
    """
    if os.environ.get("RAY_AUTH_MODE"):
        return
    token_file = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", Path.home() / ".ray" / "auth_token"))
    if os.environ.get("RAY_AUTH_TOKEN") or token_file.is_file():
        os.environ["RAY_AUTH_MODE"] = "token"


def settings_for_cluster(settings: SearchSettings) -> SearchSettings:
    """After joining a cluster: check one trial fits its largest node and fill in the defaults."""
    import ray

    node_cpus, node_gpus = cluster_node_resources()
    total = ray.cluster_resources()
    return resolved_resources(settings, node_cpus, node_gpus, total.get("CPU", 0.0), total.get("GPU", 0.0))
