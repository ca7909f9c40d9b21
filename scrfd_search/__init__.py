"""scrfd-search: budgeted architecture search for SCRFD-style face detectors."""

__version__ = "0.1.0"
