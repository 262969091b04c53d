"""The test suite; its folders mirror the package (tests/ops/test_clustering.py tests vitdense/ops/clustering.py)."""
from pathlib import Path

#: the repository's root (assets/, bench/data/, pyproject.toml)
REPO = Path(__file__).resolve().parent.parent
