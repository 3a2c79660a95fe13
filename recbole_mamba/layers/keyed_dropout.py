"""Dropout whose masks are keyed by the training batch, not drawn from the global generator.

``nn.Dropout`` draws each mask from the process's generator, so a row's mask depends on what
was drawn before it: on the rows beside it and, in a distributed run, on which rank holds it.
:class:`KeyedDropout` draws a call's mask for the WHOLE batch from a generator seeded by the
batch's key and the call's number within the batch, and keeps the rows this process holds: row
i of the batch gets the same mask in one process and on whichever rank trains it, so N ranks
train with the very masks one process uses. A rank's rows must then have the shape they have in
the whole batch (the distributed loader pads them to the batch's width). An input whose first dimension is not
the rows held (RecBole's CORE drops out all item embeddings) gets a mask of its own shape from
the same key: the same on every rank, as the tensor is.

:func:`key_dropouts` puts one in place of every ``nn.Dropout`` of a model (dropout has no
parameters: state dicts are unchanged) and returns the :class:`BatchKey` they share; the trainer
sets it before each training batch. Without a key (outside the trainer's training loop), or
in eval mode, a :class:`KeyedDropout` is ``nn.Dropout``.
"""

import torch
from torch import nn

from recbole_mamba.seeds import mixed_seed


class BatchKey:
    """The current training batch: its seed, its number of rows, and the places in it of the rows
    this process holds (None: all of them, in order)."""

    def __init__(self):
        self.seed = None
        self.rows = 0
        self.places = None
        self.calls = 0

    def set(self, seed, rows, places=None):
        """Key the coming forward pass: ``seed`` (int), ``rows`` in the whole batch, ``places``
        ((n,) int64 tensor of this process's rows' places in it) or None for all."""
        self.seed, self.rows, self.places, self.calls = seed, rows, places, 0

    def clear(self):
        self.seed = None

    def held(self):
        """How many rows this process holds of the batch."""
        return self.rows if self.places is None else len(self.places)

    def keep(self, shape, p, device):
        """(shape) bool: the next call's kept elements. An input of this process's rows (shape[0]
        = :meth:`held`) gets its rows of the whole batch's mask; any other (a table every rank
        holds whole, such as all item embeddings) a mask of its own shape."""
        generator = torch.Generator(device).manual_seed(mixed_seed(self.seed, self.calls))
        self.calls += 1
        rows_first = shape[0] == self.held()
        uniform = torch.rand((self.rows, *shape[1:]) if rows_first else shape, generator=generator, device=device)
        if rows_first and self.places is not None:
            uniform = uniform[self.places.to(device)]
        return uniform >= p


class KeyedDropout(nn.Dropout):
    """``nn.Dropout(p)`` whose training masks come from ``key`` (see the module docstring): by
    row for an input whose first dimension is the rows this process holds (B, ...), else for the
    whole input (the same on every rank for a tensor every rank holds whole)."""

    def __init__(self, p, key):
        super().__init__(p)
        self.key = key

    def forward(self, x):
        if not self.training or self.p == 0 or self.key.seed is None:
            return super().forward(x)
        if self.p == 1:
            return x * 0
        return x * self.key.keep(x.shape, self.p, x.device).to(x.dtype) / (1 - self.p)


def key_dropouts(model):
    """Put a :class:`KeyedDropout` in place of every ``nn.Dropout`` of ``model``; returns their
    :class:`BatchKey` (a model keyed before returns its key)."""
    existing = next((m.key for m in model.modules() if isinstance(m, KeyedDropout)), None)
    key = existing or BatchKey()
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Dropout:
                setattr(parent, name, KeyedDropout(child.p, key))
    return key
