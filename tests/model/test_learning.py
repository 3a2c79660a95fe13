"""Each model learns a planted sequential rule that only context can reveal.

Rule: the next item is a fixed random permutation of the item K steps back (100 items, so guessing
gives HR@10 = 0.10). Models train with next-item cross-entropy at every position from K on, on
generated sequences, and are tested on fresh ones. Control: the same trained model on test
sequences whose histories are shuffled (same items, order destroyed) must fall back towards
chance. (A shuffled history still tells which permutation chains a sequence holds, so the control
sits a little above chance, not at it.)
"""

import pytest
import torch
import torch.nn.functional as F
from recbole.data import create_dataset

from recbole_mamba.config import RecboleMambaConfig
from recbole_mamba.registry import get_model

N_ITEMS, LENGTH, K, N_TRAIN, N_TEST = 100, 30, 8, 512, 256
MAX_EPOCHS, BATCH, LR = 100, 64, 5e-3


@pytest.fixture(scope="module")
def rule_data(tmp_path_factory):
    """A data_path whose dataset 'rule' holds every item once, so RecBole's ids cover them."""
    root = tmp_path_factory.mktemp("rule_atomics")
    (root / "rule").mkdir()
    rows = "".join(f"{u}\t{i}\t{i}\n" for u in (1, 2) for i in range(1, N_ITEMS + 1))
    (root / "rule" / "rule.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\n" + rows)
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(N_ITEMS, generator=g) + 1

    def sequences(n):
        x = torch.randint(1, N_ITEMS + 1, (n, LENGTH), generator=g)
        for t in range(K, LENGTH):
            x[:, t] = perm[x[:, t - K] - 1]
        return x

    return str(root), sequences(N_TRAIN), sequences(N_TEST)


def hit_rate_at_10(model, seqs):
    model.eval()
    with torch.no_grad():
        hidden = model.encode(seqs[:, :-1])[:, K - 1:]
        top = (hidden @ model.item_embedding.weight.T).topk(10, dim=-1).indices
    return (top == seqs[:, K:].unsqueeze(-1)).any(-1).float().mean().item()


@pytest.mark.parametrize("model_name", ["MambaRec", "RecMamba", "MoEMaTrRec"])
def test_learns_rule_k_steps_back(model_name, rule_data):
    data_path, train, test = rule_data
    config = RecboleMambaConfig(model_name, "rule", config_dict={
        "data_path": data_path, "hidden_size": 32, "inner_size": 64, "n_layers": 1,
        "MAX_ITEM_LIST_LENGTH": LENGTH, "loss_type": "CE", "dropout_prob": 0.0,
        "hidden_dropout_prob": 0.0, "attn_dropout_prob": 0.0,
    })
    dataset = create_dataset(config)
    token_id = dataset.field2token_id["item_id"]
    remap = torch.tensor([0] + [token_id[str(i)] for i in range(1, N_ITEMS + 1)])
    train, test = remap[train], remap[test]
    torch.manual_seed(0)
    model = get_model(model_name)(config, dataset)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)

    hit_rate = 0.0
    for epoch in range(MAX_EPOCHS):
        model.train()
        for start in range(0, N_TRAIN, BATCH):
            seqs = train[start:start + BATCH]
            hidden = model.encode(seqs[:, :-1])[:, K - 1:]
            logits = hidden @ model.item_embedding.weight.T
            loss = F.cross_entropy(logits.flatten(0, 1), seqs[:, K:].flatten())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if epoch % 5 == 4:
            hit_rate = hit_rate_at_10(model, test)
            if hit_rate >= 0.95:
                break
    assert hit_rate >= 0.9, f"{model_name}: HR@10 {hit_rate:.3f} after {epoch + 1} epochs"

    g = torch.Generator().manual_seed(3)
    shuffled = test.clone()
    for row in shuffled:
        row[:-1] = row[:-1][torch.randperm(LENGTH - 1, generator=g)]
    control = hit_rate_at_10(model, shuffled)
    assert control <= 0.3, f"{model_name}: shuffled-history HR@10 {control:.3f}"
