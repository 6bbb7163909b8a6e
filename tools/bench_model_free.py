"""Model-free update speed: DrQ-v2 against a plain-PyTorch re-statement of the reference update,
A-LIX's extra cost over DrQ-v2, and DrQ's K=2/M=2 over K=1/M=1.

    python tools/bench_model_free.py [--updates 5] [--repeats 3] [--batch 256]

All at the published size: batch 256, 84x84 RGB, frame stack 3 (9 channels), 6 action dims
(walker), 39200 conv features. The plain re-statement below follows facebookresearch/drqv2's
agent (same layers, same batch, same order of operations) and is written only for this benchmark;
it also reports where its time goes (augmentation, encoder, critic, actor). Measurements alternate
between implementations; medians are reported.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

A, C, SIZE = 6, 9, 84


# ----------------------------------------------------------------------------- plain re-statement
class PlainShift(nn.Module):
    """drqv2's RandomShiftsAug: replicate pad 4, grid_sample at an integer shift per sample."""

    def forward(self, x):
        n, _, h, w = x.shape
        x = F.pad(x, (4, 4, 4, 4), mode="replicate")
        eps = 1.0 / (h + 8)
        arange = torch.linspace(-1.0 + eps, 1.0 - eps, h + 8)[:h]
        arange = arange.unsqueeze(0).repeat(h, 1).unsqueeze(2)
        base_grid = torch.cat([arange, arange.transpose(1, 0)], dim=2).unsqueeze(0).repeat(n, 1, 1, 1)
        shift = torch.randint(0, 9, size=(n, 1, 1, 2), dtype=x.dtype) * 2.0 / (h + 8)
        return F.grid_sample(x, base_grid + shift, padding_mode="zeros", align_corners=False)


def mlp(i, o, hidden=1024):
    return nn.Sequential(nn.Linear(i, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, o))


class PlainDrQv2:
    def __init__(self, batch: int):
        self.encoder = nn.Sequential(nn.Conv2d(C, 32, 3, 2), nn.ReLU(), nn.Conv2d(32, 32, 3, 1), nn.ReLU(),
                                     nn.Conv2d(32, 32, 3, 1), nn.ReLU(), nn.Conv2d(32, 32, 3, 1), nn.ReLU())
        self.actor_trunk = nn.Sequential(nn.Linear(39200, 50), nn.LayerNorm(50), nn.Tanh())
        self.actor_policy = mlp(50, A)
        self.critic_trunk = nn.Sequential(nn.Linear(39200, 50), nn.LayerNorm(50), nn.Tanh())
        self.q1, self.q2 = mlp(50 + A, 1), mlp(50 + A, 1)
        self.target = [nn.Sequential(nn.Linear(39200, 50), nn.LayerNorm(50), nn.Tanh()), mlp(50 + A, 1), mlp(50 + A, 1)]
        for t, s in zip(self.target, [self.critic_trunk, self.q1, self.q2]):
            t.load_state_dict(s.state_dict())
        self.aug = PlainShift()
        critic_params = [*self.critic_trunk.parameters(), *self.q1.parameters(), *self.q2.parameters()]
        self.enc_opt = torch.optim.Adam(self.encoder.parameters(), lr=1e-4)
        self.critic_opt = torch.optim.Adam(critic_params, lr=1e-4)
        self.actor_opt = torch.optim.Adam([*self.actor_trunk.parameters(), *self.actor_policy.parameters()], lr=1e-4)
        self.times = {"augmentation": 0.0, "encoder": 0.0, "critic": 0.0, "actor": 0.0}

    def encode(self, obs):
        return self.encoder(obs / 255.0 - 0.5).flatten(1)

    def act_dist(self, h, std=0.2):
        mu = torch.tanh(self.actor_policy(self.actor_trunk(h)))
        return mu, std

    def update(self, batch):
        clock = time.perf_counter
        t0 = clock()
        obs, next_obs = self.aug(batch["obs"].float()), self.aug(batch["next_obs"].float())
        t1 = clock()
        h = self.encode(obs)
        with torch.no_grad():
            next_h = self.encode(next_obs)
        t2 = clock()
        with torch.no_grad():
            mu, std = self.act_dist(next_h)
            next_a = (mu + (torch.randn_like(mu) * std).clamp(-0.3, 0.3)).clamp(-1, 1)
            z = self.target[0](next_h)
            za = torch.cat([z, next_a], -1)
            target = batch["reward"][:, None] + batch["discount"][:, None] * torch.min(self.target[1](za), self.target[2](za))
        za = torch.cat([self.critic_trunk(h), batch["action"]], -1)
        loss = F.mse_loss(self.q1(za), target) + F.mse_loss(self.q2(za), target)
        self.enc_opt.zero_grad(set_to_none=True)
        self.critic_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.critic_opt.step()
        self.enc_opt.step()
        t3 = clock()
        mu, std = self.act_dist(h.detach())
        a = (mu + (torch.randn_like(mu) * std).clamp(-0.3, 0.3)).clamp(-1, 1)
        za = torch.cat([self.critic_trunk(h.detach()), a], -1)
        actor_loss = -torch.min(self.q1(za), self.q2(za)).mean()
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_opt.step()
        with torch.no_grad():
            for t, s in zip(self.target, [self.critic_trunk, self.q1, self.q2]):
                for pt, ps in zip(t.parameters(), s.parameters()):
                    pt.lerp_(ps, 0.01)
        t4 = clock()
        for key, dt in zip(self.times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            self.times[key] += dt


# ----------------------------------------------------------------------------- ours
def ours(class_path: str, **kwargs):
    import importlib

    from worldmodels.training import EnvSpec

    module, name = class_path.rsplit(".", 1)
    agent = getattr(importlib.import_module(module), name)(**kwargs)
    agent.build(EnvSpec((C, SIZE, SIZE), 3, action_dim=A))
    optimizers = agent.configure_optimizers()
    agent.optimizers = lambda: optimizers  # outside a Trainer: the step is called directly
    agent.manual_backward = lambda loss: loss.backward()
    agent.log_scalars = lambda metrics: None
    return agent


def random_batch(batch: int):
    g = torch.Generator().manual_seed(0)
    return {"obs": torch.randint(0, 256, (batch, C, SIZE, SIZE), dtype=torch.uint8, generator=g),
            "next_obs": torch.randint(0, 256, (batch, C, SIZE, SIZE), dtype=torch.uint8, generator=g),
            "action": torch.rand(batch, A, generator=g) * 2 - 1, "reward": torch.randn(batch, generator=g),
            "discount": torch.full((batch,), 0.99 ** 3), "n": torch.full((batch,), 3)}


def seconds_per_update(step, updates: int) -> float:
    step()
    start = time.perf_counter()
    for i in range(updates):
        step(i + 1)
    return (time.perf_counter() - start) / updates


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args()
    batch = random_batch(args.batch)
    plain = PlainDrQv2(args.batch)
    candidates = {
        "plain PyTorch DrQ-v2 (reference update)": lambda i=0: plain.update(batch),
        "worldmodels DrQ-v2": None, "worldmodels A-LIX": None, "worldmodels DrQ K=1 M=1": None, "worldmodels DrQ K=2 M=2": None,
    }
    agents = {
        "worldmodels DrQ-v2": ("model_free.DrQv2", {"batch_size": args.batch}),
        "worldmodels A-LIX": ("model_free.ALIX", {"batch_size": args.batch}),
        "worldmodels DrQ K=1 M=1": ("model_free.SAC", {"batch_size": args.batch, "k_aug": 1, "m_aug": 1}),
        "worldmodels DrQ K=2 M=2": ("model_free.SAC", {"batch_size": args.batch, "k_aug": 2, "m_aug": 2}),
    }
    for label, (path, kwargs) in agents.items():
        try:
            agent = ours(path, **kwargs)
        except (ImportError, AttributeError, TypeError) as error:
            print(f"skipping {label}: {error}")
            candidates.pop(label)
            continue

        def step(i=0, agent=agent):
            agent.counters.updates = i
            agent.training_step(batch, i)

        candidates[label] = step
    results = {label: [] for label in candidates}
    for _ in range(args.repeats):  # alternate so every implementation sees the same machine load
        for label, step in candidates.items():
            results[label].append(seconds_per_update(step, args.updates))
    med = {label: statistics.median(r) for label, r in results.items()}
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"\n| implementation | batch | s / update | updates / s |\n|---|---|---|---|")
    for label, s in med.items():
        print(f"| {label} | {args.batch} | {s:.3f} | {1 / s:.2f} |")
    plain_label = "plain PyTorch DrQ-v2 (reference update)"
    if "worldmodels DrQ-v2" in med:
        print(f"\nDrQ-v2 speed relative to the plain re-statement: {med[plain_label] / med['worldmodels DrQ-v2']:.2f}x")
    if "worldmodels A-LIX" in med and "worldmodels DrQ-v2" in med:
        print(f"A-LIX cost over DrQ-v2: {med['worldmodels A-LIX'] / med['worldmodels DrQ-v2']:.2f}x time per update")
    if "worldmodels DrQ K=2 M=2" in med and "worldmodels DrQ K=1 M=1" in med:
        print(f"DrQ K=2/M=2 cost over K=1/M=1: {med['worldmodels DrQ K=2 M=2'] / med['worldmodels DrQ K=1 M=1']:.2f}x time per update")
    n = args.repeats * (args.updates + 1)
    total = sum(plain.times.values())
    print("\nwhere the plain update's time goes: " + ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in plain.times.items()))
    print(f"(over {n} plain updates)")


if __name__ == "__main__":
    main()
