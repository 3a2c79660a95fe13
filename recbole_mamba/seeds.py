"""Seeds mixed from several integers (a run's seed, an epoch, a batch, a call): one 63-bit seed
for ``torch.Generator.manual_seed``, the same wherever it is computed. A leaf module."""

import numpy as np


def mixed_seed(*parts):
    """A 63-bit seed mixed from the integers ``parts`` (each taken modulo 2**63)."""
    return int(np.random.SeedSequence([part % 2**63 for part in parts]).generate_state(1, np.uint64)[0] >> 1)
