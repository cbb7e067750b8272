"""Test settings: pinned kernel paths, and nbval comparing numbers at their meaningful precision.

The BLAS (MKL) and oneDNN code paths are pinned before torch loads, here and in the kernels nbval
starts (they inherit the environment), so that they do not depend on the CPU; see tests/nbnum.py for
what the comparison accepts and why.
"""
import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import nbnum  # noqa: E402

os.environ.setdefault("REPRO_PROGRESS", "0")
for _name, _value in nbnum.PINNED.items():
    os.environ.setdefault(_name, _value)


def pytest_configure(config):
    nbnum.install()


def torch_state():
    """What :func:`repro.config.resolve` changes process-wide: thread count and determinism flags."""
    import torch
    return (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled())


def restore_torch_state(state):
    import torch
    threads, deterministic, warn_only = state
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)


@pytest.fixture(autouse=True)
def _torch_state_is_restored():
    """A test that calls resolve() (smoke: one thread, deterministic algorithms) leaves the rest
    of the session as it found it."""
    state = torch_state()
    yield
    restore_torch_state(state)


@pytest.fixture(scope="session")
def mnist_small():
    """The real MNIST files from DATA_DIR (CI unpacks them there; missing data is a failure)."""
    import repro
    return repro.load_mnist("50k/10k/10k", limit={"train": 512, "valid": 256, "test": 256})
