"""The package version (one place; ``audiorep.__version__`` and ``audiorep --version`` read it)."""

__version__ = "0.2.0"
