"""`scrfd-search doctor`: one table of checks of what a search needs, each ok / warn / fail with its fix.

Every check is a function returning one or more `Check` rows and never raising: a broken piece shows
as a failing row, and the checks after it still run.
"""

from __future__ import annotations

import math
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from scrfd_search.data.annotations import parse_wider_txt
from scrfd_search.data.pipelines import GT_SUBDIR
from scrfd_search.errors import UserError
from scrfd_search.sampling.sampler import sample_candidates
from scrfd_search.search.checks import (
    check_address_reachable,
    check_data_root,
    default_max_concurrent,
    local_cpus,
    local_gpus,
)
from scrfd_search.search.ray_session import send_ray_auth_token
from scrfd_search.search.trial import data_workers
from scrfd_search.space.search_space import SearchSpace
from scrfd_search.training.candidate import probe_training
from scrfd_search.training.settings import candidate_data

OK, WARN, FAIL = "ok", "warn", "fail"
LOW_DISK_GIB = 5.0  # a search keeps one checkpoint per trial (a few MB each) plus logs
# Three boxes: the second overlaps the first (IoU 0.81) and must go, the third is apart and stays.
NMS_BOXES = ((0.0, 0.0, 10.0, 10.0), (1.0, 1.0, 11.0, 11.0), (20.0, 20.0, 30.0, 30.0))
NMS_SCORES = (0.9, 0.8, 0.7)
NMS_EXPECTED_KEEP = [0, 2]


@dataclass(frozen=True)
class Check:
    """One row of the table: what was checked, ok/warn/fail, what was found, and the fix."""

    name: str
    status: str
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class DoctorOptions:
    """What to check beyond the machine itself: data, cluster, results folder, and the probe's trial."""

    data: str | None = None
    address: str | None = None
    results_dir: str = "results"
    space: str | None = None
    trials: int = 320
    epochs: int = 80
    img_size: int = 640
    batch_size: int = 8
    cpus_per_trial: float = 1.0
    gpus_per_trial: float | None = None
    probe_iters: int = 20
    seed: int = 0


def torch_checks() -> list[Check]:
    """torch and its CUDA build, the GPUs with their memory, cuDNN."""
    import torch

    cuda_build = torch.version.cuda
    rows = [
        Check(
            "torch",
            OK if cuda_build else WARN,
            f"torch {torch.__version__}, CUDA build {cuda_build or 'none (CPU-only wheel)'}",
            "" if cuda_build else "install the regular torch wheel (tools/setup.sh does), not the +cpu one",
        )
    ]
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        rows.append(
            Check("GPUs", WARN, "none", "trials train on the CPU; on a GPU machine check `nvidia-smi` and the driver")
        )
    for index in range(count):
        props = torch.cuda.get_device_properties(index)
        rows.append(
            Check(
                f"GPU {index}",
                OK,
                f"{props.name}, {props.total_memory / 2**30:.1f} GiB, compute {props.major}.{props.minor}, "
                f"bf16 {'yes' if torch.cuda.is_bf16_supported() else 'no'}",
            )
        )
    cudnn = torch.backends.cudnn.version() if count and torch.backends.cudnn.is_available() else None
    rows.append(
        Check(
            "cuDNN",
            OK if cudnn else WARN,
            f"{cudnn}" if cudnn else "none",
            "" if cudnn or not count else "reinstall torch: its cuDNN libraries are missing",
        )
    )
    return rows


def nms_checks() -> list[Check]:
    """torchvision's batched NMS (what inference uses) on the CPU and on every visible GPU."""
    import torch
    import torchvision

    devices = ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count() if torch.cuda.is_available() else 0)]
    rows = []
    for device in devices:
        name = f"torchvision NMS {device}"
        try:
            boxes = torch.tensor(NMS_BOXES, device=device)
            scores = torch.tensor(NMS_SCORES, device=device)
            keep = torchvision.ops.batched_nms(boxes, scores, torch.zeros(3, dtype=torch.long, device=device), 0.45)
            found = keep.cpu().tolist()
        except Exception as exc:  # noqa: BLE001  (any failure is the finding)
            rows.append(Check(name, FAIL, _first_line(exc), "reinstall torch and torchvision from the same release"))
            continue
        ok = found == NMS_EXPECTED_KEEP
        rows.append(
            Check(
                name,
                OK if ok else FAIL,
                f"torchvision {torchvision.__version__}, kept {found}",
                "" if ok else f"expected {NMS_EXPECTED_KEEP}: reinstall torchvision matching torch",
            )
        )
    if len(devices) == 1:
        rows.append(Check("torchvision NMS cuda", WARN, "none (no GPU visible)"))
    return rows


def mmcv_check() -> Check:
    """mmcv imports with its compiled ops; mmdet and mmengine versions."""
    try:
        import mmcv
        import mmdet
        import mmengine
        from mmcv.ops import get_compiling_cuda_version
    except Exception as exc:  # noqa: BLE001
        return Check("mmcv", FAIL, _first_line(exc), "rerun tools/setup.sh (it builds mmcv's CPU kernels)")
    cuda = get_compiling_cuda_version()
    kernels = "CPU kernels only" if cuda in ("not available", "") else f"kernels for CUDA {cuda}"
    return Check(
        "mmcv",
        OK,
        f"mmcv {mmcv.__version__} ({kernels}; trials call none), mmdet {mmdet.__version__}, "
        f"mmengine {mmengine.__version__}",
    )


def ray_checks(
    address: str | None, folders: dict[str, str | None] | None = None
) -> tuple[list[Check], float, float, int]:
    """Per-node CPUs and GPUs of the cluster at address (or of this machine); also total CPUs/GPUs and nodes.

    On a cluster, also whether every node sees the given folders (flag -> path) as this machine does."""
    if address is None:
        cpus, gpus = local_cpus(), local_gpus()
        detail = f"local (no --address): {cpus} CPUs, {gpus} GPUs on {socket.gethostname()}"
        return [Check("Ray resources", OK, detail)], float(cpus), float(gpus), 1
    try:
        check_address_reachable(address)
    except UserError as exc:
        return (
            [Check("Ray cluster", FAIL, str(exc), "start the head with `ray start --head` or fix --address")],
            0,
            0,
            0,
        )
    import logging

    import ray

    send_ray_auth_token()
    try:
        ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        storage = shared_storage_check(folders or {})
    except Exception as exc:  # noqa: BLE001
        return (
            [Check("Ray cluster", FAIL, f"{address}: {_first_line(exc)}", "check the address and Ray versions")],
            0,
            0,
            0,
        )
    finally:
        if ray.is_initialized():
            ray.shutdown()
    rows = []
    for node in nodes:
        res = node["Resources"]
        rows.append(
            Check(
                f"Ray node {node.get('NodeManagerAddress', '?')}",
                OK,
                f"{res.get('CPU', 0):g} CPUs, {res.get('GPU', 0):g} GPUs, {res.get('memory', 0) / 2**30:.0f} GiB",
            )
        )
    cpus = sum(n["Resources"].get("CPU", 0.0) for n in nodes)
    gpus = sum(n["Resources"].get("GPU", 0.0) for n in nodes)
    return rows + storage, cpus, gpus, len(nodes)


def shared_storage_check(folders: dict[str, str | None]) -> list[Check]:
    """One row: whether every node of the joined cluster reads back what this machine wrote into the folders."""
    from scrfd_search.search.shared_storage import check_shared_storage  # ray

    present = {flag: path for flag, path in folders.items() if path is not None}
    if not present:
        return []
    try:
        check_shared_storage(present)
    except UserError as exc:
        return [Check("shared storage", FAIL, str(exc), "mount the same folders on every node (e.g. NFS)")]
    return [Check("shared storage", OK, "every node sees " + " and ".join(f"{f} {p}" for f, p in present.items()))]


def data_check(data: str | None) -> tuple[Check, int]:
    """The WIDER FACE layout under data and its training/validation image counts."""
    if data is None:
        return Check("data", WARN, "not checked (no --data)", "give --data DIR to check a data folder"), 0
    try:
        root = check_data_root(data)
        counts = {}
        for split in ("train", "val"):
            records = parse_wider_txt(root / GT_SUBDIR / f"wider_face_{split}_bbx_gt.txt")
            folder = root / f"WIDER_{split}" / "images"
            missing = sum(not (folder / r.name).is_file() for r in records)
            if missing:
                raise UserError(f"--data: {folder}: {missing} of the {len(records)} annotated images are missing")
            counts[split] = len(records)
    except UserError as exc:
        return Check("data", FAIL, str(exc), "point --data at a WIDER FACE folder (or make one: `demo-data`)"), 0
    return Check("data", OK, f"{root}: {counts['train']} training, {counts['val']} validation images"), counts["train"]


def disk_check(results_dir: str) -> Check:
    """Free space where the results will be written."""
    path = Path(results_dir).resolve()
    existing = next(p for p in (path, *path.parents) if p.exists())
    free = shutil.disk_usage(existing).free / 2**30
    ok = free >= LOW_DISK_GIB
    return Check(
        "disk",
        OK if ok else WARN,
        f"{free:.1f} GiB free under {path}",
        "" if ok else f"free some space or use --results-dir elsewhere (a search wants >= {LOW_DISK_GIB:g} GiB)",
    )


def probe_check(options: DoctorOptions, train_images: int, total_cpus: float, total_gpus: float) -> list[Check]:
    """Train one candidate of --space for probe_iters steps; estimate the whole search's wall time."""
    space_file = Path(options.space) if options.space else default_space()
    space = SearchSpace.load(space_file)
    candidate = sample_candidates(space, 1, options.seed, confirm=False)[0]
    arch = candidate.arch
    gpus = options.gpus_per_trial if options.gpus_per_trial is not None else (1.0 if total_gpus > 0 else 0.0)
    root = Path(options.data or ".").resolve()
    data = candidate_data(
        str(root),
        img_size=options.img_size,
        batch_size=options.batch_size,
        num_workers=data_workers(options.cpus_per_trial),
    )
    probe = probe_training(
        arch, data, iterations=options.probe_iters, device="cuda" if gpus > 0 else "cpu", seed=options.seed
    )
    concurrent = min(options.trials, default_max_concurrent(total_cpus, total_gpus, options.cpus_per_trial, gpus))
    trial_s = options.epochs * train_images / max(probe.images_per_s, 1e-9)
    total_s = math.ceil(options.trials / concurrent) * trial_s
    return [
        Check(
            "probe",
            OK,
            f"{probe.iterations} iterations of a {candidate.flops.total_gflops:.3g} GF candidate on {probe.device}, "
            f"{options.img_size} px, batch {options.batch_size}: {probe.images_per_s:.1f} images/s, "
            f"peak memory {probe.peak_memory_mib:.0f} MiB",
        ),
        Check(
            "estimate",
            OK,
            f"{options.trials} trials x {options.epochs} epochs x {train_images} images, {concurrent} at once: "
            f"about {_duration(total_s)} (training only, at the probe's rate; validation adds to it)",
        ),
    ]


def default_space() -> Path:
    """The 2.5 GF step-1 space shipped in search_spaces/."""
    return Path(__file__).resolve().parents[1] / "search_spaces" / "scrfd_2.5gf_step1.yaml"


def run_checks(options: DoctorOptions, probe: bool = True) -> list[Check]:
    """Every check, in table order (the probe only with data that passed its check)."""
    rows: list[Check] = []
    rows += _guarded("torch", torch_checks)
    rows += _guarded("torchvision NMS", nms_checks)
    rows += _guarded("mmcv", lambda: [mmcv_check()])
    ray_rows, cpus, gpus, _ = ray_checks(
        options.address, {"--results-dir": options.results_dir, "--data": options.data}
    )
    rows += ray_rows
    data_row, train_images = data_check(options.data)
    rows.append(data_row)
    rows.append(disk_check(options.results_dir))
    if not probe:
        return rows
    if data_row.status != OK or any(r.status == FAIL and r.name.startswith("Ray") for r in ray_rows):
        rows.append(Check("probe", WARN, "skipped (needs a data folder that passes and a reachable cluster)"))
        return rows
    rows += _guarded("probe", lambda: probe_check(options, train_images, cpus, gpus))
    return rows


def format_table(rows: list[Check]) -> str:
    """The checks as an aligned text table with a fix column."""
    name_w = max(len("check"), *(len(r.name) for r in rows))
    detail_w = min(100, max(len("found"), *(len(r.detail) for r in rows)))
    lines = [f"{'check':<{name_w}}  {'status':<6}  {'found':<{detail_w}}  fix", "-" * (name_w + detail_w + 20)]
    for r in rows:
        lines.append(f"{r.name:<{name_w}}  {r.status:<6}  {r.detail:<{detail_w}}  {r.fix}".rstrip())
    return "\n".join(lines)


def _guarded(name: str, check: Callable[[], list[Check]]) -> list[Check]:
    """Run a check; an unexpected exception becomes a failing row instead of ending the doctor."""
    try:
        return check()
    except UserError as exc:
        return [Check(name, FAIL, str(exc))]
    except Exception as exc:  # noqa: BLE001
        return [Check(name, FAIL, f"{type(exc).__name__}: {_first_line(exc)}", "report this with the traceback")]


def _first_line(exc: BaseException) -> str:
    """The first line of an exception's message (or its type)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _duration(seconds: float) -> str:
    """Seconds as '3 h 20 min' / '12 min' / '40 s'."""
    if seconds >= 3600:
        return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"
