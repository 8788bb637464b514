import math

import pytest
import torch

from lavis.common.optim import LR_SCHEDULERS, build_adamw, param_groups


def make_optimizer(scales=None):
    model = torch.nn.ModuleDict(
        {"Qformer": torch.nn.Linear(4, 4), "proj": torch.nn.Linear(4, 2), "norm": torch.nn.LayerNorm(2)}
    )
    return model, build_adamw(model, lr=1.0, weight_decay=0.05, lr_scales=scales)


def scheduler(name, opt, **kw):
    args = dict(init_lr=1e-4, min_lr=1e-6, warmup_lr=1e-7, warmup_steps=10, total_steps=110, steps_per_epoch=4)
    args.update(kw)
    return LR_SCHEDULERS.get(name)(opt, **args)


def test_param_groups_no_decay_for_bias_and_norm():
    model, _ = make_optimizer()
    groups = param_groups(model.named_parameters(), 0.05)
    decayed = {n for g in groups if g["weight_decay"] > 0 for n in g["names"]}
    assert decayed == {"Qformer.weight", "proj.weight"}


def test_cosine_values_with_warmup_longer_than_an_epoch():
    _, opt = make_optimizer()
    sched = scheduler("linear_warmup_cosine", opt)  # warmup 10 steps spans 2.5 epochs of 4 steps
    lrs = [sched.get_lr()]
    for _ in range(110):
        sched.step()
        lrs.append(sched.get_lr())
    assert lrs[0] == pytest.approx(1e-7)
    assert lrs[5] == pytest.approx(1e-7 + (1e-4 - 1e-7) * 0.5)  # still warming up in epoch 1
    assert lrs[10] == pytest.approx(1e-4)
    # halfway through the cosine (step 10 + 50): min + (max-min)/2
    assert lrs[60] == pytest.approx(1e-6 + (1e-4 - 1e-6) * 0.5)
    assert lrs[110] == pytest.approx(1e-6)
    assert lrs[35] == pytest.approx(1e-6 + (1e-4 - 1e-6) * 0.5 * (1 + math.cos(math.pi * 25 / 100)))


def test_step_scheduler_decays_per_epoch_after_warmup():
    _, opt = make_optimizer()
    sched = scheduler("linear_warmup_step", opt, warmup_steps=2, decay_rate=0.5, min_lr=1e-5)
    assert sched.lr_at(1) == pytest.approx(1e-7 + (1e-4 - 1e-7) / 2)
    assert sched.lr_at(3) == pytest.approx(1e-4)  # epoch 0
    assert sched.lr_at(4) == pytest.approx(5e-5)  # epoch 1
    assert sched.lr_at(12) == pytest.approx(1.25e-5)  # epoch 3: 1e-4 * 0.5**3
    assert sched.lr_at(16) == pytest.approx(1e-5)  # epoch 4: 6.25e-6 floored at min_lr


def test_constant_and_lr_scale_applied_per_group():
    _, opt = make_optimizer(scales={"Qformer.": 0.1})
    sched = scheduler("constant", opt, warmup_steps=0)
    lrs = sorted({(g["lr_scale"], g["lr"]) for g in opt.param_groups})
    assert lrs == [(0.1, pytest.approx(1e-5)), (1.0, pytest.approx(1e-4))]
    sched.step()
    assert [g["lr"] for g in opt.param_groups if g["lr_scale"] == 0.1] == [pytest.approx(1e-5)] * 2


def test_scheduler_state_round_trip():
    _, opt = make_optimizer()
    sched = scheduler("linear_warmup_cosine", opt)
    for _ in range(17):
        sched.step()
    _, opt2 = make_optimizer()
    other = scheduler("linear_warmup_cosine", opt2)
    other.load_state_dict(sched.state_dict())
    assert other.get_lr() == sched.get_lr()
    assert [g["lr"] for g in opt2.param_groups] == [g["lr"] for g in opt.param_groups]
