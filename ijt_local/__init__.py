"""ijt-local: implicit instruction tuning on a laptop."""

__version__ = "0.1.0"
