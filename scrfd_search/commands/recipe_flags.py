"""The recipe flags that `train`, `launch` and `export` share: --optimizer, --lr, --weight-decay, --momentum."""

from __future__ import annotations

import argparse

from scrfd_search.recipe import OPTIMIZER_NAMES, OPTIMIZERS


def add_recipe_arguments(parser: argparse.ArgumentParser, lr_note: str = "") -> None:
    """--optimizer, --lr, --weight-decay, --momentum (train, launch and export share them)."""
    defaults = ", ".join(f"{n} {OPTIMIZERS[n].lr:g}" for n in OPTIMIZER_NAMES)
    parser.add_argument(
        "--optimizer",
        metavar="NAME",
        help=f"optimizer: {', '.join(OPTIMIZER_NAMES)} (default sgd, the reference's)",
    )
    parser.add_argument(
        "--lr",
        type=float,
        help=f"learning rate (default: the optimizer's: {defaults}){lr_note}",
    )
    parser.add_argument(
        "--weight-decay",
        type=float,
        metavar="WD",
        help="weight decay (default: the optimizer's: 5e-4 for sgd/sgdp/sam, 1e-2 decoupled for adamw/adaboundw)",
    )
    parser.add_argument(
        "--momentum", type=float, help="momentum of sgd, sgdp and sam (default 0.9; adamw and adaboundw have none)"
    )


def recipe_flags(args: argparse.Namespace) -> dict:
    """The recipe flags as given (None where not given)."""
    return {k: getattr(args, k) for k in ("optimizer", "lr", "weight_decay", "momentum")}
