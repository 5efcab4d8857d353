"""Distributed set-up from torchrun / ModelZoo environment variables.

torchrun sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``;
the ModelZoo scripts set ``RANK_SIZE`` / ``RANK_ID`` for the same purpose. The backend follows
the device: hccl (npu), nccl (cuda), gloo (cpu).
"""
import atexit
import datetime
import gc
import os
import socket
from dataclasses import dataclass

import torch
import torch.distributed as dist

from common.device_caps import caps
from common.errors import UserError, first_line

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


def _env_int(name, default):
    text = os.environ.get(name)
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        raise UserError(f"environment variable {name}={text!r} is not a whole number; unset it "
                        "or set a number") from None


def env_dist_info():
    """Read rank / world size from the environment: torchrun's WORLD_SIZE / RANK /
    LOCAL_RANK, or the ModelZoo names RANK_SIZE / RANK_ID when both are set. A RANK_SIZE left
    in the environment of a plain ``python3 train.py`` (no launcher, no RANK_ID) is not a
    distributed run: it would wait for peers that never come."""
    if "WORLD_SIZE" in os.environ:
        world, rank = _env_int("WORLD_SIZE", 1), _env_int("RANK", 0)
    elif "RANK_SIZE" in os.environ:
        world = _env_int("RANK_SIZE", 1)  # checked even where it is not used
        if "RANK_ID" not in os.environ:
            return DistInfo()
        rank = _env_int("RANK_ID", 0)
    else:
        return DistInfo()
    local = _env_int("LOCAL_RANK", rank)
    if world <= 1:
        return DistInfo()
    if not 0 <= rank < world:
        raise UserError(f"rank {rank} is outside 0..{world - 1} (WORLD_SIZE/RANK or "
                        "RANK_SIZE/RANK_ID); start each process with its own rank")
    return DistInfo(rank=rank, world_size=world, local_rank=local)


def init_distributed(info, device_type, timeout_s=None):
    """Join the process group when more than one process takes part. Collectives time out
    after ``timeout_s`` (``$SEGZOO_DIST_TIMEOUT``, default 1800 s), so a rank whose peer hangs
    or dies stops with an error instead of waiting for ever (gloo notices a dead peer's closed
    connection at once)."""
    if not info.enabled or dist.is_initialized():
        return
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29500")
    timeout_s = timeout_s or float(os.environ.get("SEGZOO_DIST_TIMEOUT", 1800))
    # Its functions take ``group=group.WORLD`` as a default, evaluated at import. DDP imports
    # it lazily; imported after init_process_group, it would hold the group until the
    # interpreter finalizes (see release_at_exit). Imported first, it holds None.
    import torch.distributed.nn.functional  # noqa: F401
    check_gloo_reachable(info)
    try:
        dist.init_process_group(backend=BACKENDS[device_type], rank=info.rank,
                                world_size=info.world_size,
                                timeout=datetime.timedelta(seconds=timeout_s))
    except dist.DistError as exc:
        port = os.environ["MASTER_PORT"]
        if "address already in use" in str(exc).lower() or "EADDRINUSE" in str(exc):
            raise UserError(f"MASTER_PORT {port} is busy on {os.environ['MASTER_ADDR']}; pass "
                            "another --master_port (or free it)") from None
        raise UserError(f"rank {info.rank} could not join the process group at "
                        f"{os.environ['MASTER_ADDR']}:{port} ({first_line(exc)}); check that "
                        "every rank is started with the same MASTER_ADDR/MASTER_PORT") from None
    if BACKENDS[device_type] != "gloo":  # every rank makes it, in the same order
        try:
            _CONTROL_GROUP.append(dist.new_group(
                backend="gloo", timeout=datetime.timedelta(seconds=timeout_s)))
        except RuntimeError as exc:
            raise UserError(f"rank {info.rank} could not make the host-side gloo group "
                            f"({first_line(exc)}); set GLOO_SOCKET_IFNAME to the network "
                            "interface that reaches the other nodes") from None
    _KEPT_GROUP.append(dist.group.WORLD)
    atexit.register(release_at_exit)


def check_gloo_reachable(info):
    """Across nodes, gloo (the CPU backend, and the host-side group beside nccl / hccl) listens
    on the address this node's hostname resolves to unless GLOO_SOCKET_IFNAME names an
    interface. A hostname resolving to loopback (Debian's 127.0.1.1) cannot be reached from
    another node: the group would fail or wait out its timeout, so say so before joining."""
    local = int(os.environ.get("LOCAL_WORLD_SIZE", info.world_size))
    if local >= info.world_size or os.environ.get("GLOO_SOCKET_IFNAME"):
        return
    try:
        address = socket.gethostbyname(socket.gethostname())
    except OSError:
        address = None
    if address is None or address.startswith("127."):
        raise UserError(f"this node's hostname {socket.gethostname()} resolves to "
                        f"{address or 'no address'}, which the other nodes cannot reach; set "
                        "GLOO_SOCKET_IFNAME to the interface that reaches them (the launch "
                        "scripts set it from the route to --master_addr)")


PEER_FAILURE_SIGNS = ("connection reset", "connection closed", "broken pipe", "timed out",
                      "timeout", "gloo", "nccl", "hccl")


def is_peer_failure(exc):
    """Whether an exception raised in a distributed run comes from a collective whose peer
    died or hung (gloo raises plain RuntimeErrors for these)."""
    text = str(exc).lower()
    return isinstance(exc, dist.DistError) or any(sign in text for sign in PEER_FAILURE_SIGNS)


def peer_failure(exc, rank):
    """The UserError for a collective that failed because another rank died or hung."""
    return UserError(f"rank {rank}: a distributed operation failed ({first_line(exc)[:200]}); "
                     "another process probably died or hung: read the other ranks' logs "
                     "(train_rank*.log) for its error, then rerun to resume")


def check_same_config(cfg, info, ignored=("paths",)):
    """Every rank must train the same resolved config (``paths`` may differ per node)."""
    if not dist.is_initialized():
        return
    mine = {k: v for k, v in cfg.items() if k not in ignored}
    gathered = [None] * info.world_size
    dist.all_gather_object(gathered, mine)
    for rank, other in enumerate(gathered):
        if other != gathered[0]:
            key, ours, theirs = first_difference(gathered[0], other)
            raise UserError(f"rank {rank} runs a different config from rank 0 ({key}: "
                            f"{theirs!r} vs {ours!r}); start every rank with the same config "
                            "and flags")


def first_difference(a, b, prefix=""):
    """(dotted key, value in a, value in b) of the first difference between two configs."""
    for key in sorted(set(a) | set(b)):
        left, right = a.get(key), b.get(key)
        if isinstance(left, dict) and isinstance(right, dict):
            found = first_difference(left, right, f"{prefix}{key}.")
            if found:
                return found
        elif left != right:
            return f"{prefix}{key}", left, right
    return None


def shutdown():
    _CONTROL_GROUP.clear()
    if dist.is_initialized():
        dist.destroy_process_group()


def release_at_exit():
    """The end of a process that joined a group: free what still holds it (a finished run's
    DDP wrapper, whose reducer frees it with the GIL held), then drop the last reference from
    Python, which joins gloo's worker threads with the GIL released, before the interpreter
    finalizes. A worker still freeing a finished collective needs the GIL: joined with the
    GIL held, it deadlocks; left to the interpreter's finalization, it aborts the process
    (SIGABRT, "terminate called without an active exception") after a run that succeeded."""
    shutdown()
    gc.collect()
    _KEPT_GROUP.clear()


def broadcast_buffers(module, src=0):
    """Give every rank rank ``src``'s floating-point buffers (BatchNorm running statistics):
    before a distributed evaluation, so that the figure is the one of the model rank 0 saves
    (mmcv's ``DistEvalHook(broadcast_bn_buffer=True)``)."""
    if not dist.is_initialized():
        return
    for buffer in module.buffers():
        if buffer.is_floating_point():
            dist.broadcast(buffer, src)


def gather_objects(obj):
    """Every rank's ``obj``, by rank (``[obj]`` for a single process)."""
    if not dist.is_initialized():
        return [obj]
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(obj, src=0):
    """Rank ``src``'s ``obj`` on every rank."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src)
    return box[0]


def barrier():
    if dist.is_initialized():
        dist.barrier()


def all_reduce_sum(tensor):
    """Sum a tensor over all ranks in place (no-op in a single process)."""
    if dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_reduce_max(tensor, group=None):
    """Maximum of a tensor over all ranks in place (no-op in a single process)."""
    if dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX, group=group)
    return tensor


_CONTROL_GROUP = []  # the host-side group, made once by init_distributed on every rank
_KEPT_GROUP = []  # the default group, kept from Python until release_at_exit


def control_group():
    """The process group for host-side flags (CPU tensors, gloo): the default group when it
    is gloo already, else the gloo group ``init_distributed`` made next to nccl / hccl, so a
    flag's collective never waits for the device."""
    return _CONTROL_GROUP[0] if _CONTROL_GROUP else None


def reduce_mean_scalars(values, device):
    """Average a dict of python floats over ranks (for logging), in the collective dtype every
    backend supports (HCCL has no float64)."""
    if not dist.is_initialized() or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=caps(device.type).collective_dtype,
                     device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    t /= dist.get_world_size()
    return dict(zip(keys, t.tolist()))
