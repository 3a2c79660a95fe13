"""Sampled evaluation (``uni100``, ``pop100``, ``uni1000``, ...) that encodes each history once.

RecBole's ``NegSampleEvalDataLoader`` repeats every row 1 + N times (``inter_feat.repeat``), one
copy per candidate item, so a model encodes a 2,000-item history 101 times to score 101 items.
:class:`CandidateEvalDataLoader` draws the same negatives with the same sampler calls, in the same
order, and yields each row once with its candidates beside it; the trainer encodes the row and
scores the candidates (:func:`recbole_mamba.trainer.ranking.candidate_topk`).
"""

import numpy as np
import torch
from recbole.data.dataloader import NegSampleEvalDataLoader


class CandidateEvalDataLoader(NegSampleEvalDataLoader):
    """Batches of ``eval_batch_size`` rows (one per user), each as
    ``(rows, candidates (B, 1 + N) with the target first, positive_u (B,), positive_i (B,))``."""

    @classmethod
    def replaces(cls, loader):
        """Whether ``loader`` (RecBole's sampled-evaluation loader) can be replaced: one row per
        user (leave-one-out), negatives drawn (not ``none``), no dynamic (model-scored) sampling."""
        if type(loader) is not NegSampleEvalDataLoader:
            return False
        args = loader.neg_sample_args
        return (args["distribution"] != "none"
                and args["sample_num"] != "none" and not args.get("dynamic", False)
                and int(loader.uid2items_num.max(initial=0)) <= 1)

    @classmethod
    def of(cls, loader):
        """The replacement of RecBole's ``loader``, on its dataset and sampler."""
        return cls(loader.config, loader._dataset, loader._sampler, shuffle=False)

    def _init_batch_size_and_step(self):
        batch_size = self.config["eval_batch_size"]
        self.step = batch_size
        self.set_batch_size(batch_size)

    def collate_fn(self, index):
        rows = self.rows_of(index)
        batch = self.transform(self._dataset, self._dataset[rows])
        targets = batch[self._dataset.iid_field]
        negatives = self.negatives(batch[self._dataset.uid_field].numpy(), targets.numpy())
        candidates = torch.cat([targets.unsqueeze(1), negatives], dim=1)
        return batch, candidates, torch.arange(len(rows)), targets

    def rows_of(self, index):
        """The dataset rows of users ``index`` (positions in ``uid_list``): (B,) int."""
        return np.array([self.uid2index[uid].start for uid in self.uid_list[np.array(index)]], dtype=np.int64)

    def negatives(self, users, targets):
        """(B, N) negatives of ``users`` (B,) whose positives are ``targets`` (B,): one sampler
        call per user, as RecBole's loader makes them, so the same negatives."""
        drawn = [self._sampler.sample_by_user_ids(users[i:i + 1], targets[i:i + 1], self.neg_sample_num)
                 for i in range(len(users))]
        return torch.stack(drawn).to(torch.long) if drawn else torch.empty((0, self.neg_sample_num), dtype=torch.long)
