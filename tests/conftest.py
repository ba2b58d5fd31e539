import pytest
import torch

import frfsr_plugin  # noqa: F401  (compat alias and registries before any basicsr import in the tests)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
