"""FLOPs and parameters of a detector, by component: closed-form and measured with fvcore."""

from scrfd_search.flops.report import COMPONENTS, FlopsReport

__all__ = ["COMPONENTS", "FlopsReport"]
