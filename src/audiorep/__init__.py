"""audiorep: the AudioSet family of audio models (VGGish first), exact and fast in PyTorch."""

from audiorep._version import __version__

__all__ = ["__version__", "load"]


def __getattr__(name: str):
    # Lazy so that `import audiorep` stays cheap and never touches weights.
    if name == "load":
        from audiorep.pipelines import load

        return load
    raise AttributeError(f"module 'audiorep' has no attribute {name!r}")
