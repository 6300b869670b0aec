"""Helpers for simulator tests: URDFs from pybullet_data and small scene factories."""

from __future__ import annotations

import pybullet_data
import pytest

DATA = pybullet_data.getDataPath()


@pytest.fixture
def data_path() -> str:
    return DATA
