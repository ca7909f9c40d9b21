"""The one constructor of what a search trial trains with; `train` and `doctor`'s probe use it too."""

from __future__ import annotations

from dataclasses import replace

from scrfd_search.config_builder import DataSettings, Schedule, widerface_data
from scrfd_search.recipe import Recipe
from scrfd_search.training.data_checks import warmup_iters_for


def candidate_data(
    data_root: str,
    *,
    img_size: int,
    batch_size: int,
    num_workers: int,
    gt_dir: str | None = None,
    max_train_images: int | None = None,
    max_val_images: int | None = None,
) -> DataSettings:
    """WIDER FACE at data_root (official layout, large crops) fed as a search trial feeds it."""
    data = widerface_data(data_root)
    return replace(
        data,
        gt_dir=gt_dir.rstrip("/") + "/" if gt_dir else data.gt_dir,
        img_size=img_size,
        batch_size=batch_size,
        num_workers=num_workers,
        max_train_images=max_train_images,
        max_val_images=max_val_images,
    )


def candidate_schedule(
    data: DataSettings,
    epochs: int,
    recipe: Recipe,
    val_interval: int | None = None,
    warmup_iters: int | None = None,
) -> Schedule:
    """A search trial's schedule for data: shortened to `epochs`, the lr as given, warm-up capped by data size.

    The reference's search (configs/scrfdgen*/, search_tools/search_train.py) trains each candidate on one
    GPU, 8 images per batch, at lr 0.01 as given: Schedule.search does not rescale the lr.
    """
    warmup = warmup_iters if warmup_iters is not None else warmup_iters_for(data, epochs)
    return replace(Schedule.search(epochs, recipe, val_interval), warmup_iters=warmup)
