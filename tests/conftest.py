import random

import pytest
import torch

from nnunet_scnas import CELL_TYPES, OPS, Genotype


@pytest.fixture
def random_genotype() -> Genotype:
    rnd = random.Random(0)
    return Genotype({t: tuple(rnd.choice(OPS) for _ in range(14)) for t in CELL_TYPES}, {"note": "test"})


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
