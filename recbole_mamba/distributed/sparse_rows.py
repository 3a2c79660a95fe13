"""The item table's sparse gradient (``item_table_updates: sparse``) summed over ranks as rows.

DDP all-reduces dense gradients; a 10^7 x H item table's would be gigabytes a step. With sparse
updates each rank's table gradient holds only the rows its share of the batch read (items,
targets, negatives): here every rank sends its (row indices, row values) to every other (one
all-gather of the counts, then of the padded rows: collectives NCCL has too; gloo's sparse
all-reduce would not run on GPUs), and all sum them into the same gradient. Bytes a step:
(8 + 4 H) x the rows the ranks touched, not 4 H x the catalogue.
"""

import torch
import torch.distributed as dist


def sum_sparse_rows(grad, world_size, scale):
    """(rows, H) sparse COO ``grad`` of this rank -> the sum over ranks times ``scale``, coalesced,
    the same on every rank."""
    grad = grad.coalesce()
    rows, values = grad.indices()[0], grad.values()
    counts_all = [torch.zeros(1, dtype=torch.int64, device=rows.device) for _ in range(world_size)]
    dist.all_gather(counts_all, torch.tensor([len(rows)], dtype=torch.int64, device=rows.device))
    counts = torch.cat(counts_all)
    most = int(counts.max())
    padded_rows = rows.new_zeros(most)
    padded_rows[:len(rows)] = rows
    padded_values = values.new_zeros(most, values.shape[1])
    padded_values[:len(rows)] = values
    rows_all = [torch.empty_like(padded_rows) for _ in range(world_size)]
    values_all = [torch.empty_like(padded_values) for _ in range(world_size)]
    dist.all_gather(rows_all, padded_rows)
    dist.all_gather(values_all, padded_values)
    rows = torch.cat([r[:n] for r, n in zip(rows_all, counts.tolist(), strict=True)])
    values = torch.cat([v[:n] for v, n in zip(values_all, counts.tolist(), strict=True)]) * scale
    return torch.sparse_coo_tensor(rows.unsqueeze(0), values, grad.shape).coalesce()
