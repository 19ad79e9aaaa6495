"""The package version (one place: the CLI, provenance and packaging read it)."""

__version__ = "0.1.0"
