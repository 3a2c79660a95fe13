"""Top-k rankings without a users x items score matrix, for RecBole's collector.

RecBole's full-sort evaluation scores a batch of users against every item (B, n_items), and its
collector adds an int matrix of the same size to mark positives; its sampled evaluation scatters
the candidates' scores into a (B, n_items) matrix of -inf. At 10^6 items and 1,024 users a batch
that is 10-15 GB. Here the same top-k lists come from:

- :func:`chunked_topk`: the items in chunks, a running top-k merged per chunk (memory O(B x chunk));
- :func:`candidate_topk`: only a row's candidates (memory O(B x candidates)).

Ties are broken by the lower item id (a stable ranking); RecBole's ``torch.topk`` breaks them in
no documented order, so the two agree wherever no tie straddles a positive. Both return a
:class:`RankedBatch`, which :class:`RankingCollector` turns into RecBole's ``rec.items`` and
``rec.topk`` exactly as its own collector does from a score matrix; RecBole's metric functions
(Hit, NDCG, MRR, Recall, Precision, MAP, ItemCoverage, ...) then run unchanged.
"""

from dataclasses import dataclass

import torch
from recbole.evaluator import Collector

def test_eval_mode(config):
    """The evaluation mode of the test split (``full``, ``uni100``, ...), as ``eval_args`` gives it
    for both splits or per split."""
    mode = config["eval_args"]["mode"]
    return mode.get("test", mode) if isinstance(mode, dict) else mode


RANKED_NEEDS = ("rec.items", "rec.topk")  # what a top-k list can stand for; not rec.meanrank / rec.score
# users x items scored at once (float32: 16 MiB). Measured (32 rows, 1.24 M items, 20 batches, the
# CLI's allocator policy): chunks of 2^24 scores left 0.82 GiB more resident memory behind (glibc
# keeps the freed blocks of that size), 2^22 0.10 GiB, and took 6.7 and 6.1 s.
SCORES_PER_CHUNK = 1 << 22


@dataclass
class RankedBatch:
    """The top ``k`` item ids of each of a batch's rows, best first: ``items`` (B, k)."""

    items: torch.Tensor


def _stable_topk(values, ids, k):
    """The k best of each row by (value descending, id ascending), given rows already in id order:
    (B, n) values and ids -> (B, k) each."""
    order = torch.sort(values, dim=1, descending=True, stable=True).indices[:, :k]
    return values.gather(1, order), ids.gather(1, order)


def _chunk_candidates(scores, k):
    """Columns of each row's k best scores (ties: the leftmost), in column order: (B, C) -> (B, k)."""
    threshold = torch.topk(scores, k, dim=1).values[:, -1:]
    above = scores > threshold
    tied = scores == threshold
    room = k - above.sum(dim=1, keepdim=True)
    keep = above | (tied & (torch.cumsum(tied, dim=1) <= room))
    return keep.nonzero()[:, 1].view(scores.size(0), k)


def chunked_topk(hidden, items, k, masked=None, chunk=None):
    """The top ``k`` items by ``hidden @ items.T`` of each row, item 0 (padding) and the ``masked``
    (rows, items) pairs left out, without the (B, n_items) matrix: (B, H), (n_items, H) ->
    :class:`RankedBatch`. ``chunk``: items scored at once (default: ``SCORES_PER_CHUNK`` / B)."""
    n_rows, n_items = hidden.size(0), items.size(0)
    chunk = chunk or max(k, SCORES_PER_CHUNK // max(1, n_rows))
    best_values = hidden.new_empty((n_rows, 0))
    best_ids = torch.empty((n_rows, 0), dtype=torch.long, device=hidden.device)
    for start in range(0, n_items, chunk):
        scores = hidden @ items[start:start + chunk].T  # (B, C)
        if start == 0:
            scores[:, 0] = float("-inf")
        if masked is not None:
            rows, cols = masked
            inside = (cols >= start) & (cols < start + scores.size(1))
            scores[rows[inside], cols[inside] - start] = float("-inf")
        columns = _chunk_candidates(scores, min(k, scores.size(1)))
        values = torch.cat([best_values, scores.gather(1, columns)], dim=1)
        ids = torch.cat([best_ids, columns + start], dim=1)  # earlier chunks hold the lower ids
        best_values, best_ids = _stable_topk(values, ids, min(k, values.size(1)))
    return RankedBatch(best_ids)


def candidate_topk(hidden, items, candidates, k):
    """The top ``k`` of each row's ``candidates`` (B, C) item ids by the dot product with
    ``hidden`` (B, H), computed as the models' ``predict`` does; a candidate drawn twice counts
    once (RecBole scatters scores into an item row): :class:`RankedBatch`."""
    ids, _ = torch.sort(candidates, dim=1)
    scores = (hidden.unsqueeze(1) * items[ids]).sum(dim=-1)  # (B, C)
    repeated = torch.zeros_like(ids, dtype=torch.bool)
    repeated[:, 1:] = ids[:, 1:] == ids[:, :-1]
    scores = scores.masked_fill(repeated, float("-inf"))
    return RankedBatch(_stable_topk(scores, ids, min(k, ids.size(1)))[1])


class RankingCollector(Collector):
    """RecBole's ``Collector``, which also takes a :class:`RankedBatch` in place of a score matrix."""

    def can_collect_ranked(self):
        """Whether every score-derived input the configured metrics need comes from a top-k list."""
        needed = {key for key in ("rec.items", "rec.topk", "rec.meanrank", "rec.score", "data.label")
                  if self.register.need(key)}
        return needed <= set(RANKED_NEEDS)

    def eval_batch_collect(self, scores_tensor, interaction, positive_u, positive_i):
        if not isinstance(scores_tensor, RankedBatch):
            return super().eval_batch_collect(scores_tensor, interaction, positive_u, positive_i)
        top = scores_tensor.items[:, :max(self.topk)]
        if self.register.need("rec.items"):
            self.data_struct.update_tensor("rec.items", top)
        if self.register.need("rec.topk"):
            positive_u, positive_i = positive_u.to(top.device), positive_i.to(top.device)
            hits = torch.zeros_like(top, dtype=torch.int)
            hits.index_add_(0, positive_u, (top[positive_u] == positive_i.unsqueeze(1)).int())
            counts = torch.bincount(positive_u, minlength=top.size(0)).int().unsqueeze(1)
            self.data_struct.update_tensor("rec.topk", torch.cat((hits, counts), dim=1))
