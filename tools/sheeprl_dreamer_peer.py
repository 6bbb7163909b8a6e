"""Peer measurement: sheeprl's own DreamerV3 (size S) gradient update on CPU, for comparison with ours.

Run with sheeprl's virtual environment, not ours (this imports sheeprl, not the `worldmodels` package):

    /tmp/sheeprl-venv/bin/python tools/sheeprl_dreamer_peer.py [--updates 3] [--threads N] [--override key=value ...]

The config is sheeprl's `exp=dreamer_v3` (algo=dreamer_v3_S, env=atari, 16 sequences x 64 steps, cnn_keys=[rgb]),
composed with hydra's compose API from sheeprl's own config directory. The agent is built with sheeprl's
`build_agent` and every update is sheeprl's `train(...)` plus the target-critic update that precedes it in sheeprl's
main loop, with the same Fabric / optimizers / Moments / MetricAggregator setup as `sheeprl.cli.run_algorithm` and
`dreamer_v3.main`. The observation space is one RGB key (3x64x64 uint8, channel-first as sheeprl's env wrappers give
it) and the action space is Discrete(6) (Pong's minimal set), so no emulator is needed. Replay-buffer sampling is not
timed: the batches are random, drawn before each timed update, shaped and typed like `sample_batches` yields them.
Prints one JSON object on one line of stdout (what `tools/bench_dreamer.py` parses).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

import gymnasium as gym
import hydra
import numpy as np
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from torch.distributions import Distribution

import sheeprl
from sheeprl.algos.dreamer_v3 import utils as dv3_utils
from sheeprl.algos.dreamer_v3.agent import build_agent
from sheeprl.algos.dreamer_v3.dreamer_v3 import train
from sheeprl.utils.metric import MetricAggregator
from sheeprl.utils.utils import dotdict

N_ACTIONS = 6


def make_cfg(overrides):
    config_dir = os.path.join(os.path.dirname(sheeprl.__file__), "configs")
    with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
        cfg = compose(
            config_name="config",
            overrides=["exp=dreamer_v3", "fabric.accelerator=cpu", "algo.mlp_keys.encoder=[]", "run_name=peer"]
            + list(overrides),
        )
    return dotdict(OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True))  # as sheeprl.cli.run does


def random_batch(cfg, generator):
    """One batch as `sample_batches` yields it: [T, B, ...] float tensors (images still 0..255)."""
    T, B = cfg.algo.per_rank_sequence_length, cfg.algo.per_rank_batch_size
    size = cfg.env.screen_size
    rgb = torch.randint(0, 256, (T, B, 3, size, size), dtype=torch.uint8, generator=generator)
    actions = torch.nn.functional.one_hot(torch.randint(0, N_ACTIONS, (T, B), generator=generator), N_ACTIONS)
    rewards = torch.randint(-1, 2, (T, B, 1), generator=generator) * (torch.rand(T, B, 1, generator=generator) < 0.05)
    terminated = (torch.rand(T, B, 1, generator=generator) < 0.01).to(torch.uint8)
    is_first = torch.cat((torch.ones(1, B, 1, dtype=torch.uint8), terminated[:-1]), 0)  # the step after a terminal
    batch = {"rgb": rgb, "actions": actions, "rewards": rewards, "terminated": terminated,
             "truncated": torch.zeros_like(terminated), "is_first": is_first}
    return {k: v.float() for k, v in batch.items()}


def count(module):
    return sum(p.numel() for p in module.parameters())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=3, help="timed updates, after 1 warm-up update")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)")
    parser.add_argument("--override", nargs="*", default=[], help="extra hydra overrides, e.g. algo=dreamer_v3_XS")
    args = parser.parse_args()

    cfg = make_cfg(args.override)
    # What sheeprl.cli.run_algorithm does before launching the algorithm (OMP_NUM_THREADS is set after torch was
    # imported there too, so it doesn't change torch's thread count)
    os.environ["OMP_NUM_THREADS"] = str(cfg.num_threads)
    torch.set_float32_matmul_precision(cfg.float32_matmul_precision)
    Distribution.set_default_validate_args(cfg.distribution.validate_args)
    if args.threads:
        torch.set_num_threads(args.threads)
    for k in set(cfg.metric.aggregator.metrics.keys()) - dv3_utils.AGGREGATOR_KEYS:
        cfg.metric.aggregator.metrics.pop(k, None)
    MetricAggregator.disabled = cfg.metric.log_level == 0 or len(cfg.metric.aggregator.metrics) == 0
    fabric = hydra.utils.instantiate(cfg.fabric, strategy="auto", callbacks=[], _convert_="all")
    fabric.seed_everything(cfg.seed)

    # dreamer_v3.main, without the environments and the replay buffer
    size = cfg.env.screen_size
    obs_space = gym.spaces.Dict({"rgb": gym.spaces.Box(0, 255, (3, size, size), np.uint8)})
    actions_dim, is_continuous = (N_ACTIONS,), False
    world_model, actor, critic, target_critic, _player = build_agent(fabric, actions_dim, is_continuous, cfg, obs_space)
    world_optimizer, actor_optimizer, critic_optimizer = fabric.setup_optimizers(*(
        hydra.utils.instantiate(opt_cfg, params=module.parameters(), _convert_="all")
        for opt_cfg, module in [(cfg.algo.world_model.optimizer, world_model), (cfg.algo.actor.optimizer, actor),
                                (cfg.algo.critic.optimizer, critic)]
    ))
    m = cfg.algo.actor.moments
    moments = dv3_utils.Moments(m.decay, m.max, m.percentile.low, m.percentile.high)
    aggregator = None
    if not MetricAggregator.disabled:
        aggregator = hydra.utils.instantiate(cfg.metric.aggregator, _convert_="all").to(fabric.device)

    rssm = world_model.rssm
    params = {name: count(module) for name, module in [
        ("encoder", world_model.encoder), ("recurrent_model", rssm.recurrent_model),
        ("representation_model", rssm.representation_model), ("transition_model", rssm.transition_model),
        ("decoder", world_model.observation_model), ("reward_head", world_model.reward_model),
        ("continue_head", world_model.continue_model), ("actor", actor), ("critic", critic),
        ("target_critic", target_critic),
    ]}
    params["initial_recurrent_state"] = rssm.initial_recurrent_state.numel()
    params["world_model_total"] = count(world_model)
    params["total_trained"] = params["world_model_total"] + params["actor"] + params["critic"]
    params["total_with_target_critic"] = params["total_trained"] + params["target_critic"]

    generator = torch.Generator().manual_seed(cfg.seed)
    gradient_steps = 0

    def update(batch):
        """One iteration of the `for batch in batches` loop of dreamer_v3.main."""
        nonlocal gradient_steps
        if gradient_steps % cfg.algo.critic.per_rank_target_network_update_freq == 0:
            tau = 1 if gradient_steps == 0 else cfg.algo.critic.tau
            for cp, tcp in zip(critic.module.parameters(), target_critic.parameters()):
                tcp.data.copy_(tau * cp.data + (1 - tau) * tcp.data)
        train(fabric, world_model, actor, critic, target_critic, world_optimizer, actor_optimizer,
              critic_optimizer, batch, aggregator, cfg, is_continuous, actions_dim, moments)
        gradient_steps += 1

    update(random_batch(cfg, generator))  # warm-up
    times = []
    for _ in range(args.updates):
        batch = random_batch(cfg, generator)
        start = time.perf_counter()
        update(batch)
        times.append(time.perf_counter() - start)
    metrics = {}  # the losses, to see that they are finite (no episode ends here: those metrics are dropped)
    if aggregator:
        for name in ("Rewards/rew_avg", "Game/ep_len_avg"):
            aggregator.metrics.pop(name, None)
        metrics = {k: float(v) for k, v in aggregator.compute().items()}

    seconds = sum(times) / len(times)
    wm, a = cfg.algo.world_model, cfg.algo
    config = {
        "batch_size": a.per_rank_batch_size, "sequence_length": a.per_rank_sequence_length, "horizon": a.horizon,
        "recurrent_state_size": wm.recurrent_model.recurrent_state_size, "hidden_size": wm.transition_model.hidden_size,
        "dense_units": a.dense_units, "mlp_layers": a.mlp_layers, "cnn_multiplier": wm.encoder.cnn_channels_multiplier,
        "stochastic_size": wm.stochastic_size, "discrete_size": wm.discrete_size, "reward_bins": wm.reward_model.bins,
        "critic_bins": a.critic.bins, "compile": a.compile.enabled, "precision": cfg.fabric.precision,
    }
    print(json.dumps({
        "sheeprl_version": sheeprl.__version__, "torch_version": torch.__version__, "config": config,
        "params": params, "updates": args.updates, "seconds_per_update_each": [round(t, 3) for t in times],
        "seconds_per_update": seconds, "updates_per_second": 1.0 / seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # ru_maxrss is in KiB on Linux
        "torch_threads": torch.get_num_threads(), "losses_mean": metrics,
    }))


if __name__ == "__main__":
    main()
