"""Model fixtures: a tiny synthetic dataset (see :mod:`modelutil`)."""

from __future__ import annotations

import pytest
import torch
from modelutil import oscillator_data

from twin.model.data import Dataset


@pytest.fixture
def oscillator() -> Dataset:
    torch.manual_seed(0)
    return oscillator_data()
