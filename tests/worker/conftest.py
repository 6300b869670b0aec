"""Worker fixtures: one tiny trained cartpole model per test session."""

from __future__ import annotations

from pathlib import Path

import pytest
from workerutil import train_tiny_model


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of a small cartpole checkpoint (trained once per session, seeded)."""
    return train_tiny_model(tmp_path_factory.mktemp("models") / "cartpole-tiny.pt")
