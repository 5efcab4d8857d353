"""Distributed set-up from torchrun / ModelZoo environment variables.

torchrun sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``;
the ModelZoo scripts set ``RANK_SIZE`` / ``RANK_ID`` for the same purpose. The backend follows
the device: hccl (npu), nccl (cuda), gloo (cpu).
"""
import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

BACKENDS = {"npu": "hccl", "cuda": "nccl", "cpu": "gloo"}


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self):
        return self.rank == 0

    @property
    def enabled(self):
        return self.world_size > 1


def env_dist_info():
    """Read rank / world size from the environment (torchrun first, ModelZoo names second)."""
    world = int(os.environ.get("WORLD_SIZE", os.environ.get("RANK_SIZE", 1)))
    rank = int(os.environ.get("RANK", os.environ.get("RANK_ID", 0)))
    local = int(os.environ.get("LOCAL_RANK", rank))
    if world <= 1:
        return DistInfo()
    return DistInfo(rank=rank, world_size=world, local_rank=local)


def init_distributed(info, device_type, timeout_s=1800):
    """Join the process group when more than one process takes part."""
    if not info.enabled or dist.is_initialized():
        return
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29500")
    dist.init_process_group(backend=BACKENDS[device_type], rank=info.rank,
                            world_size=info.world_size,
                            timeout=datetime.timedelta(seconds=timeout_s))


def shutdown():
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier():
    if dist.is_initialized():
        dist.barrier()


def all_reduce_sum(tensor):
    """Sum a tensor over all ranks in place (no-op in a single process)."""
    if dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def reduce_mean_scalars(values, device):
    """Average a dict of python floats over ranks (for logging)."""
    if not dist.is_initialized() or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    t /= dist.get_world_size()
    return dict(zip(keys, t.tolist()))
