"""Turning many audio files into embedding files (runner, writers)."""
