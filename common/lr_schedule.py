"""Iteration-based learning rate: optional linear warm-up, then poly decay to ``eta_min``.

Closed form of mmseg's ``LinearLR(start_factor=warmup_ratio, end=warmup_iters)`` followed by
``PolyLR(power, eta_min, begin=warmup_iters, end=max_iters)``; a pure function of the
iteration, so resuming needs no scheduler state.
"""


def lr_at(iteration, base_lr, max_iters, warmup_iters=0, warmup_ratio=0.1, power=0.9,
          eta_min=1e-4):
    if iteration < warmup_iters:
        return base_lr * (warmup_ratio + (1 - warmup_ratio) * iteration / warmup_iters)
    progress = min((iteration - warmup_iters) / max(max_iters - warmup_iters, 1), 1.0)
    return (base_lr - eta_min) * (1 - progress) ** power + eta_min


def schedule_from_config(cfg, iters_per_epoch=None):
    """``iteration -> lr`` for a resolved config. ``schedule.warmup_epochs`` > 0 (the seeds'
    ``--warm_up_epochs``) sets the warm-up to that many epochs of ``iters_per_epoch``."""
    s, lr = cfg["schedule"], cfg["optim"]["lr"]
    warmup = s["warmup_iters"]
    if s["warmup_epochs"] > 0 and iters_per_epoch:
        warmup = max(1, round(s["warmup_epochs"] * iters_per_epoch))
    return lambda it: lr_at(it, lr, s["max_iters"], warmup, s["warmup_ratio"], s["power"],
                            s["eta_min"])


def set_lr(optimizer, lr):
    """Every parameter group's lr = ``lr`` x its ``lr_mult`` (1 when absent). The multiplier
    lives in the group, so the optimizer's state_dict carries it through resume."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_mult", 1.0)
