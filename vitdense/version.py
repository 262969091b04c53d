"""The package version (one place; pyproject.toml carries the same number, checked by a test)."""
__version__ = "0.1.0"
