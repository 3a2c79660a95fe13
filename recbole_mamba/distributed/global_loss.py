"""The loss of a batch split between ranks: the mean over ALL its positions (torch only)."""

import torch
import torch.distributed as dist


def global_mean(local_mean, share, context):
    """The batch's mean loss over every rank's positions (a 0-d tensor, the same on every rank),
    whose gradient is that of this rank's ``local_mean`` (0-d) weighted by its ``share`` of the
    positions, times the world size (DDP averages the ranks' gradients); and the ranks whose
    ``local_mean`` was NaN. One all-reduce (float64) carries both."""
    world = context.world_size
    summed = torch.zeros(1 + world, dtype=torch.float64, device=local_mean.device)
    summed[0] = local_mean.detach().double() * share
    summed[1 + context.rank] = torch.isnan(local_mean.detach()).double()
    dist.all_reduce(summed)
    weighted = local_mean * (share * world)
    return weighted + (summed[0].to(local_mean.dtype) - weighted).detach(), [
        rank for rank in range(world) if summed[1 + rank] > 0]
