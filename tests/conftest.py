"""Test configuration: Hypothesis profiles and the seeded random generator."""

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# The helpers module lives next to the tests; make it importable however pytest is run.
sys.path.insert(0, str(Path(__file__).resolve().parent))

# Compilation happens on first use, inside whichever example comes first, so no deadline.
# "ci" is the default; FASTACT_HYPOTHESIS_PROFILE=thorough runs many more examples.
settings.register_profile(
    "ci",
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("thorough", parent=settings.get_profile("ci"), max_examples=1000)
settings.load_profile(os.environ.get("FASTACT_HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def rng(request):
    """A generator seeded from the test's id, so every test sees fixed, distinct data."""
    seed = sum(map(ord, request.node.nodeid)) * 2654435761 % 2**32
    return np.random.default_rng(seed)
