"""SearchSettings: how a search was launched, as recorded in results/NAME/experiment.json."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from scrfd_search.errors import UserError, check_seed
from scrfd_search.recipe import DEFAULT_OPTIMIZER, Recipe
from scrfd_search.search.objectives import DEFAULT_OBJECTIVES, Objective, parse_objectives

SEARCHERS = ("random", "optuna")
SCHEDULERS = ("fifo", "asha")
RAY_DIR = "ray"
TRIALS_DIR = "trials"
OPTUNA_FILE = "optuna.db"
CONSTRAINT_FILE = "constraint.json"


def asha_grace_period(epochs: int) -> int:
    """ASHA's first rung: a tenth of the epochs (at least one)."""
    return max(1, epochs // 10)


@dataclass(frozen=True)
class SearchSettings:
    """Every launch option of a search, with absolute paths so that resume works from anywhere."""

    name: str
    results_dir: str
    space_file: str
    data_root: str
    trials: int
    epochs: int
    searcher: str = "random"
    scheduler: str = "fifo"
    seed: int = 0
    img_size: int = 640
    batch_size: int = 8
    lr: float | None = None  # None here and below: the optimizer's default (scrfd_search.recipe.OPTIMIZERS)
    optimizer: str | None = None
    weight_decay: float | None = None
    momentum: float | None = None
    val_interval: int | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float | None = None  # None: 1 where the machine (or cluster) has GPUs, else 0
    max_concurrent: int | None = None
    address: str | None = None
    from_experiment: str | None = None
    top_k: int | None = None
    amp: bool = False
    recipe_only: bool = False
    arch_file: str | None = None
    objectives: str = DEFAULT_OBJECTIVES  # "hard", "hard,latency" or "hard,gflops" (search/objectives.py)
    repeats: int = 1  # each candidate trains this many times (seeds seed .. seed + repeats - 1), ranked by the mean

    def __post_init__(self) -> None:
        """Reject values no search can run with."""
        if self.searcher not in SEARCHERS:
            raise UserError(f"--searcher: {self.searcher!r} is not one of {', '.join(SEARCHERS)}")
        if self.scheduler not in SCHEDULERS:
            raise UserError(f"--scheduler: {self.scheduler!r} is not one of {', '.join(SCHEDULERS)}")
        for flag, value in (("--trials", self.trials), ("--epochs", self.epochs), ("--img-size", self.img_size)):
            if value < 1:
                raise UserError(f"{flag}: {value} must be at least 1")
        if self.img_size % 32 or self.img_size < 64:
            raise UserError(f"--img-size: {self.img_size} must be a multiple of 32 (the largest stride), at least 64")
        if self.repeats < 1:
            raise UserError(f"--repeats: {self.repeats} must be at least 1")
        if self.repeats > 1 and self.scheduler == "asha":
            raise UserError(
                f"--repeats: {self.repeats} with --scheduler asha would stop trials on one seed's AP (use fifo)"
            )
        if self.batch_size < 1:
            raise UserError(f"--batch-size: {self.batch_size} must be at least 1")
        self.recipe()  # names a bad --optimizer, --lr, --weight-decay or --momentum
        if self.val_interval is not None and not 1 <= self.val_interval <= self.epochs:
            raise UserError(f"--val-interval: {self.val_interval} must be between 1 and --epochs {self.epochs}")
        if self.max_concurrent is not None and self.max_concurrent < 1:
            raise UserError(f"--max-concurrent: {self.max_concurrent} must be at least 1")
        check_seed(self.seed)
        if self.top_k is not None and self.from_experiment is None:
            raise UserError("--top-k: only meaningful with --from STEP1_NAME")
        if self.amp and self.gpus_per_trial == 0:
            raise UserError("--amp: mixed precision needs GPUs, and --gpus-per-trial is 0")
        if self.recipe_only and self.arch_file is None:
            raise UserError("--recipe-only: needs --arch ARCH.json (the architecture whose recipe is searched)")
        if self.arch_file is not None and not self.recipe_only:
            raise UserError("--arch: only with --recipe-only (a search samples its architectures from --space)")
        if self.recipe_only and self.from_experiment is not None:
            raise UserError("--from: not with --recipe-only (the architecture is fixed by --arch)")
        if len(self.objective_list) > 1 and self.recipe_only:
            raise UserError(f"--objectives {self.objectives}: not with --recipe-only (one architecture, one cost)")

    @property
    def objective_list(self) -> tuple[Objective, ...]:
        """The parsed objectives (hard AP first)."""
        return parse_objectives(self.objectives)

    def recipe(self, optimizer: str | None = None) -> Recipe:
        """The launch's recipe: --optimizer (or the given default) with --lr/--weight-decay/--momentum."""
        return Recipe(self.optimizer or optimizer or DEFAULT_OPTIMIZER, self.lr, self.weight_decay, self.momentum)

    @property
    def path(self) -> Path:
        """The experiment folder results/NAME."""
        return Path(self.results_dir) / self.name

    @property
    def ray_dir(self) -> Path:
        """Ray Tune's storage_path; the experiment itself lies in ray_dir / name."""
        return self.path / RAY_DIR

    @property
    def ray_experiment(self) -> Path:
        """The Ray Tune experiment folder (what Tuner.restore reads)."""
        return self.ray_dir / self.name

    @property
    def trials_root(self) -> Path:
        """Per-trial work folders (mmengine logs and checkpoints, the trial event log)."""
        return self.path / TRIALS_DIR

    @property
    def optuna_file(self) -> Path:
        """The Optuna study (SQLite; open it with optuna-dashboard)."""
        return self.path / OPTUNA_FILE

    @property
    def optuna_url(self) -> str:
        """SQLAlchemy URL of the Optuna study."""
        return f"sqlite:///{self.optuna_file}"

    @property
    def validation_every(self) -> int:
        """Epochs between validations: --val-interval, else ASHA's grace period, else only at the end."""
        if self.val_interval is not None:
            return self.val_interval
        return asha_grace_period(self.epochs) if self.scheduler == "asha" else self.epochs

    @property
    def device(self) -> str:
        """Where each trial trains."""
        return "cuda" if self.gpus_per_trial else "cpu"

    def with_resources(self, available_gpus: float, max_concurrent: int | None = None) -> SearchSettings:
        """A copy with the GPU default and the concurrency limit filled in (values given are kept)."""
        gpus = self.gpus_per_trial if self.gpus_per_trial is not None else (1.0 if available_gpus > 0 else 0.0)
        return replace(self, gpus_per_trial=gpus, max_concurrent=self.max_concurrent or max_concurrent)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for experiment.json."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "experiment.json") -> SearchSettings:
        """Read back the fields written by to_dict (other keys of experiment.json are ignored)."""
        names = {f.name for f in fields(cls)}
        missing = [n for n in ("name", "results_dir", "space_file", "data_root", "trials", "epochs") if n not in data]
        if missing:
            raise UserError(f"{source}: missing key {missing[0]!r} (not written by `scrfd-search launch`?)")
        return cls(**{k: v for k, v in data.items() if k in names})
