"""nbval: compare text, not HTML (pandas renders tables twice) nor widget state."""
import os

import pytest

os.environ.setdefault("REPRO_PROGRESS", "0")


def pytest_collectstart(collector):
    if collector.fspath and collector.fspath.ext == ".ipynb":
        collector.skip_compare += ("text/html", "application/javascript", "stderr",
                                   "application/vnd.jupyter.widget-view+json", "image/png")


@pytest.fixture(scope="session")
def mnist_small():
    """The real MNIST files from DATA_DIR (CI unpacks them there; missing data is a failure)."""
    import repro
    return repro.load_mnist("50k/10k/10k", limit={"train": 512, "valid": 256, "test": 256})
