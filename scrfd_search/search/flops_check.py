"""Each trial confirms its own candidate's FLOPs with fvcore when it starts.

The driver hands candidates out on the closed form's figure (flops.analytic, milliseconds each), so the
first trial starts at once; fvcore, which builds the detector and traces it (seconds at 34 GF), runs in
the trial, on the trial's own resources, in parallel with the other trials. Both figures are recorded;
a disagreement larger than the space's tolerance fails the trial, with one line saying so, before any
training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scrfd_search.errors import UserError
from scrfd_search.flops.report import FlopsReport

DEFAULT_TOLERANCE = 0.02  # a search without a space (recipe-only) has no tolerance of its own


class FlopsMismatchError(UserError):
    """fvcore and the closed form disagree about a candidate by more than the space's tolerance."""


@dataclass(frozen=True)
class FlopsCheck:
    """The two GFLOPs figures of one candidate and the tolerance they were held to."""

    closed_form_gflops: float
    fvcore_gflops: float
    tolerance: float

    @property
    def disagreement(self) -> float:
        """|fvcore - closed form| as a fraction of the closed form."""
        return abs(self.fvcore_gflops - self.closed_form_gflops) / self.closed_form_gflops

    @property
    def agrees(self) -> bool:
        """Whether the figures are within the tolerance of each other."""
        return self.disagreement <= self.tolerance

    def to_dict(self) -> dict[str, Any]:
        """JSON form, as trial reports and rows carry it."""
        return {
            "closed_form_gflops": self.closed_form_gflops,
            "fvcore_gflops": self.fvcore_gflops,
            "disagreement": self.disagreement,
            "tolerance": self.tolerance,
        }

    def error(self, trial_id: str) -> FlopsMismatchError:
        """The one-line error of a candidate whose figures disagree."""
        return FlopsMismatchError(
            f"trial {trial_id}: fvcore counts {self.fvcore_gflops:.4f} GFLOPs but the closed form handed it out "
            f"at {self.closed_form_gflops:.4f} ({100 * self.disagreement:.2f}% apart, above the space's "
            f"{100 * self.tolerance:g}% tolerance); not trained"
        )


def compare_flops(handed_out: FlopsReport, measured: FlopsReport, tolerance: float | None) -> FlopsCheck:
    """The check of a candidate handed out at `handed_out` GFLOPs and measured at `measured` by fvcore."""
    return FlopsCheck(
        closed_form_gflops=handed_out.total_gflops,
        fvcore_gflops=measured.total_gflops,
        tolerance=DEFAULT_TOLERANCE if tolerance is None else tolerance,
    )
