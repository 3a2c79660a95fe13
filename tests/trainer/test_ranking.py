"""Top-k lists without a users x items matrix give RecBole's metrics: chunked full ranking and
sampled ranking that encodes each row once, against RecBole's own collector and loader."""

import pytest
import torch
from recbole.evaluator import Collector, Evaluator

from recbole_mamba.config import RecboleMambaConfig
from recbole_mamba.trainer.ranking import RankedBatch, RankingCollector, candidate_topk, chunked_topk

METRICS = ["Hit", "NDCG", "MRR", "Recall", "Precision", "MAP"]


def stable_ranking(scores, k):
    """Reference: each row's items by (score descending, id ascending)."""
    return torch.tensor([sorted(range(scores.size(1)), key=lambda j: (-scores[r, j].item(), j))[:k]
                         for r in range(scores.size(0))])


def masked_scores(hidden, items, masked=None):
    scores = hidden @ items.T
    scores[:, 0] = float("-inf")
    if masked is not None:
        scores[masked] = float("-inf")
    return scores


@pytest.mark.parametrize("chunk", [3, 10, 64, 500])
def test_chunked_topk_is_the_stable_ranking_ties_included(chunk):
    """Scores rounded to a few values, so ties within and across chunks are common."""
    g = torch.Generator().manual_seed(0)
    hidden = torch.randint(-2, 3, (9, 4), generator=g).float()
    items = torch.randint(-1, 2, (200, 4), generator=g).float()
    rows = torch.tensor([0, 0, 3, 8, 8, 8])
    cols = torch.tensor([5, 150, 7, 1, 2, 199])
    got = chunked_topk(hidden, items, 20, (rows, cols), chunk=chunk)
    want = stable_ranking(masked_scores(hidden, items, (rows, cols)), 20)
    assert torch.equal(got.items, want)


def test_chunked_topk_with_fewer_finite_scores_than_k():
    hidden = torch.ones(2, 1)
    items = torch.arange(6, dtype=torch.float).unsqueeze(1)
    cols = torch.tensor([1, 2, 3, 4, 5])
    got = chunked_topk(hidden, items, 4, (torch.zeros(5, dtype=torch.long), cols), chunk=2)
    assert got.items.tolist() == [[0, 1, 2, 3], [5, 4, 3, 2]]


def test_candidate_topk_is_the_stable_ranking_of_the_candidates():
    g = torch.Generator().manual_seed(1)
    hidden = torch.randint(-2, 3, (5, 3), generator=g).float()
    items = torch.randint(-1, 2, (40, 3), generator=g).float()
    candidates = torch.randint(1, 40, (5, 12), generator=g)
    got = candidate_topk(hidden, items, candidates, 6).items
    for r in range(5):
        ids = sorted(set(candidates[r].tolist()))
        scores = {i: (hidden[r] * items[i]).sum().item() for i in ids}
        assert got[r].tolist() == sorted(ids, key=lambda i: (-scores[i], i))[:6]


def evaluate_with(collector_class, config, batches):
    collector = collector_class(config)
    for scores, positive_u, positive_i in batches:
        collector.eval_batch_collect(scores, None, positive_u, positive_i)
    return Evaluator(config).evaluate(collector.get_data_struct())


@pytest.fixture
def ranking_config(tiny_data_path):
    return RecboleMambaConfig("MambaRec", "ml-tiny", config_dict={
        "data_path": tiny_data_path, "metrics": METRICS, "topk": [1, 5, 10]})


def test_chunked_full_ranking_gives_recboles_metrics(ranking_config):
    """Random scores (no ties) with some positives ranked beyond the cut-offs, several batches,
    history pairs masked: every metric equals RecBole's collector on the dense score matrix."""
    g = torch.Generator().manual_seed(2)
    dense, ranked = [], []
    for batch in range(3):
        hidden = torch.randn(17, 8, generator=g)
        items = torch.randn(300, 8, generator=g)
        positive_i = torch.randint(1, 300, (17,), generator=g)
        positive_i[:4] = (hidden[:4] @ items.T)[:, 1:].argmax(dim=1) + 1  # some hits at rank 1
        masked = (torch.randint(0, 17, (40,), generator=g), torch.randint(1, 300, (40,), generator=g))
        keep = masked[1] != positive_i[masked[0]]
        masked = (masked[0][keep], masked[1][keep])
        positive_u = torch.arange(17)
        dense.append((masked_scores(hidden, items, masked), positive_u, positive_i))
        ranked.append((chunked_topk(hidden, items, 10, masked, chunk=37), positive_u, positive_i))
    want = evaluate_with(Collector, ranking_config, dense)
    got = evaluate_with(RankingCollector, ranking_config, ranked)
    assert got == want
    assert 0 < want["hit@10"] < 1


def test_ranked_collection_with_several_positives_per_row(ranking_config):
    """rec.topk counts every positive of a row (RecBole's pos_len) and marks each one's rank."""
    g = torch.Generator().manual_seed(3)
    hidden, items = torch.randn(6, 4, generator=g), torch.randn(50, 4, generator=g)
    top = stable_ranking(masked_scores(hidden, items), 10)
    positive_u = torch.tensor([0, 0, 0, 1, 2, 3, 4, 4, 5])
    positive_i = torch.stack([top[0, 0], top[0, 7], torch.tensor(49), top[1, 0], top[2, 3], top[3, 5], top[4, 9],
                              top[4, 2], top[5, 1]])
    dense = [(masked_scores(hidden, items), positive_u, positive_i)]
    ranked = [(RankedBatch(top), positive_u, positive_i)]
    assert evaluate_with(RankingCollector, ranking_config, ranked) == evaluate_with(Collector, ranking_config, dense)


def test_metrics_that_need_scores_are_not_collected_ranked(tiny_data_path):
    ranked = RecboleMambaConfig("MambaRec", "ml-tiny", config_dict={"data_path": tiny_data_path})
    scored = RecboleMambaConfig("MambaRec", "ml-tiny", config_dict={
        "data_path": tiny_data_path, "metrics": ["Hit", "GAUC"]})
    assert RankingCollector(ranked).can_collect_ranked()
    assert not RankingCollector(scored).can_collect_ranked()


@pytest.mark.parametrize("model_name", ["MambaRec", "SASRec", "GRU4Rec"])
@pytest.mark.parametrize("exclude_history", [False, True])
def test_trainer_full_ranking_in_item_chunks_equals_recboles(tiny_data_path, monkeypatch, model_name,
                                                            exclude_history):
    """Through the trainer on ml-tiny (untrained: k up to 300 for hits): the chunked ranking (in
    chunks of 300 items) against RecBole's dense score matrix and collector, history masking on
    and off."""
    from recbole.data import data_preparation
    from recbole.utils import init_seed

    from recbole_mamba.data import create_dataset
    from recbole_mamba.data.history import attach_history, history_to_exclude
    from recbole_mamba.trainer import SafeCheckpointTrainer, trainer as trainer_module
    from recbole_mamba.trainer import ranking
    from tests.conftest import TINY_CONFIG

    config = RecboleMambaConfig(model_name, "ml-tiny", config_dict={
        **TINY_CONFIG, "data_path": tiny_data_path, "embedding_size": 16, "metrics": METRICS, "topk": [1, 10, 300],
        "exclude_history": exclude_history, "eval_batch_size": 16})
    init_seed(0, True)
    dataset = create_dataset(config)
    history = history_to_exclude(config, dataset)
    _, valid_data, test_data = data_preparation(config, dataset)
    attach_history(history, valid_data, test_data)
    model = config.model_class(config, valid_data._dataset).eval()
    trainer = SafeCheckpointTrainer(config, model)
    monkeypatch.setattr(ranking, "SCORES_PER_CHUNK", 16 * 100)
    got = trainer.evaluate(test_data, load_best_model=False)
    assert trainer._ranked
    monkeypatch.setattr(trainer_module, "scores_by_dot_product", lambda model_class: False)
    want = trainer.evaluate(test_data, load_best_model=False)
    assert not trainer._ranked
    assert got == want
    assert 0 < want["hit@300"] < 1
