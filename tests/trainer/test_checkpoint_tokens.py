"""Item tokens in checkpoints: UTF-8 bytes and offsets, read back as written, from a list of str
or from a store's token table (its arrays, not copied); a list of str (older checkpoints) reads too."""

import numpy as np
import torch

from recbole_mamba.atomics.store import loading_settings, open_store, write_store
from recbole_mamba.trainer.checkpoint import load_checkpoint, save_checkpoint, token_tensors, tokens_of

TOKENS = ["[PAD]", "42", "ü x", "", "日本", "a\tb"]


def test_tokens_round_trip_through_a_weights_only_checkpoint(tmp_path):
    path = tmp_path / "c.pth"
    save_checkpoint(path, item_tokens=token_tensors(TOKENS))
    stored = load_checkpoint(path)["item_tokens"]
    assert stored["utf8"].dtype == torch.uint8 and stored["ends"].tolist()[-1] == len("".join(TOKENS).encode())
    assert list(tokens_of(stored)) == TOKENS and np.shares_memory(tokens_of(stored).blob, stored["utf8"].numpy())
    assert list(tokens_of(TOKENS)) == TOKENS  # as an older checkpoint holds them


def test_a_stores_token_table_is_saved_without_copying(tmp_path):
    source = tmp_path / "d.inter"
    source.write_text("header\n")
    loading = loading_settings("user_id", "item_id", "timestamp", "\t")
    write_store(str(tmp_path), "d", np.array([1]), np.array([1]), np.zeros(1), ["[PAD]", "u"], TOKENS, str(source), loading)
    table = open_store(str(tmp_path), "d", str(source), loading).item_tokens
    tensors = token_tensors(table)
    assert np.shares_memory(tensors["utf8"].numpy(), table.arrays()[0])
    assert list(tokens_of(tensors)) == TOKENS == list(tokens_of(token_tensors(list(table))))
