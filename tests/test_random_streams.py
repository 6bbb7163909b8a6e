"""The value-based learner's weight noise and A-LIX shifts: drawn on the batch's device from the agent's
own stream, replayed for the target net's pass over s', kept by checkpoints, untouched by health checks.

The stream is a generator that ``torch.get_rng_state`` does not cover (as a GPU's is not), so replaying
the CPU generator alone, as the learner once did, fails these tests."""

import pytest
import torch

from model_free import Rainbow
from worldmodels.training import EnvSpec

SPEC = EnvSpec((4, 44, 44), 1, num_actions=3)
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU"))]


def noisy_mixing_agent(device: str) -> Rainbow:
    """DER's noisy nets with an A-LIX layer and a separate target net (target period above 1), whose
    weights equal the online net's right after building."""
    torch.manual_seed(0)
    agent = Rainbow(encoder="alix", hidden=32, alix=True, target_update_period=100)
    agent.build(SPEC)
    return agent.to(device).train()


@pytest.mark.parametrize("device", DEVICES)
def test_the_target_pass_over_s_prime_replays_the_online_pass_draws_from_the_agents_stream(device):
    agent = noisy_mixing_agent(device)
    next_obs = torch.randint(0, 256, (8, *SPEC.obs_shape), dtype=torch.uint8, device=device)
    cpu_state = torch.get_rng_state()
    stream_before = agent.noise_stream.on(device).get_state()
    next_online, next_target, _ = agent.next_state_logits(next_obs)
    # Equal weights and the same noise and shift: the two passes agree exactly.
    assert torch.equal(next_online, next_target)
    assert not torch.equal(agent.noise_stream.on(device).get_state(), stream_before)  # drawn from the stream...
    assert torch.equal(torch.get_rng_state(), cpu_state)  # ...not from the CPU's generator
    # Without the replay the two passes would differ: the next pass draws new noise and a new shift.
    with torch.no_grad():
        assert not torch.equal(agent.q_target(next_obs), next_target)


def test_the_noise_stream_is_checkpointed_and_restored():
    agent = noisy_mixing_agent("cpu")
    obs = torch.randint(0, 256, (8, *SPEC.obs_shape), dtype=torch.uint8)
    agent.q(obs)  # some draws before the checkpoint
    checkpoint = {"state_dict": agent.state_dict()}
    agent.on_save_checkpoint(checkpoint)
    with torch.no_grad():
        expected = agent.q(obs)
    resumed = noisy_mixing_agent("cpu")
    resumed.on_load_checkpoint(checkpoint)
    resumed.load_state_dict(checkpoint["state_dict"])
    torch.manual_seed(123)  # the global generator plays no part
    with torch.no_grad():
        assert torch.equal(resumed.q(obs), expected)


def test_draws_made_inside_generators_forked_leave_the_training_stream_as_it_was():
    agent = noisy_mixing_agent("cpu")
    obs = torch.randint(0, 256, (8, *SPEC.obs_shape), dtype=torch.uint8)
    twin = noisy_mixing_agent("cpu")
    with torch.no_grad():
        agent.q(obs)
        twin.q(obs)
        with agent.generators_forked():  # what a health check does
            agent.q(obs)
            agent.q(obs)
        assert torch.equal(agent.q(obs), twin.q(obs))
