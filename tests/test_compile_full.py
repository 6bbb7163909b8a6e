"""``--compile full``: DreamerV3's and DrQ-v2's whole update, compiled without a graph break, computes what
the eager update computes from the same noise, drawn once before it; the update's parts
that changed to make it a pure function (one backward pass of actor + critic) train as before; and no
distribution of ours checks its arguments, whatever torch's global default.

The compiled side uses the ``aot_eager`` backend: dynamo's tracing with ``fullgraph=True`` (any graph
break raises) and AOTAutograd's forward and backward graphs, run by eager kernels, so the numbers
differ from eager ones by float rounding at most and compiling costs seconds, not inductor's minutes."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch._dynamo.eval_frame import _debug_get_cache_entry_list

from model_free import ALIX, DrQv2
from worldmodels.dreamer import DreamerV3
from worldmodels.errors import ConfigError
from worldmodels.training import EnvSpec
from worldmodels.training.compile import compile_agent, compile_choice

from test_compile_precision import assert_same_parameters, drqv2, drqv2_batch, without_trainer

ROOT = Path(__file__).resolve().parent.parent
B, T, HORIZON = 2, 4, 3


def tiny_dreamer(continuous: bool) -> DreamerV3:
    """The smallest DreamerV3 that still has every part: 16x16 images, 4 latents of 4 classes."""
    torch.manual_seed(0)
    agent = DreamerV3(size="XS", deter=32, mlp_units=32, cnn_depth=4, stoch=4, classes=4, vector_units=16,
                      batch_size=B, seq_len=T, horizon=HORIZON, video_every=0)
    agent.build(EnvSpec((3, 16, 16), 3, action_dim=2) if continuous else EnvSpec((3, 16, 16), 3, num_actions=3))
    return agent


def tiny_batch(continuous: bool) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    first, terminal = torch.zeros(B, T, dtype=torch.bool), torch.zeros(B, T, dtype=torch.bool)
    terminal[1, 1], first[1, 2] = True, True  # an episode ends inside the second sequence
    action = torch.rand(B, T, 2, generator=g) * 2 - 1 if continuous else torch.randint(0, 3, (B, T), generator=g)
    return {"obs": torch.randint(0, 256, (B, T, 3, 16, 16), dtype=torch.uint8, generator=g), "action": action,
            "reward": torch.randn(B, T, generator=g), "terminal": terminal, "first": first, "last": terminal.clone()}


def recording_noise(agent: DreamerV3) -> list[dict[str, torch.Tensor]]:
    """The noise each update of ``agent`` draws, in order."""
    drawn, draw = [], agent.update_noise
    agent.update_noise = lambda batch: drawn.append(draw(batch)) or drawn[-1]
    return drawn


@pytest.mark.parametrize("continuous", [False, True], ids=["discrete", "continuous"])
def test_the_whole_dreamer_update_compiles_without_a_graph_break_and_equals_the_eager_one(continuous):
    eager = without_trainer(tiny_dreamer(continuous), adam_eps=1e-3)  # eps: see assert_same_parameters
    compiled = without_trainer(tiny_dreamer(continuous), adam_eps=1e-3)
    assert compile_agent(compiled, "full", backend="aot_eager") == ["world_model_region", "behavior_region"]
    eager_noise, compiled_noise = recording_noise(eager), recording_noise(compiled)
    batch = tiny_batch(continuous)
    for update in range(2):  # the second update runs the graphs the first one compiled
        for agent in (eager, compiled):
            torch.manual_seed(5 + update)  # the update does not read the global generator: see below
            agent.training_step(batch, update)
        # The same numbers drawn, from the agents' own streams, on both sides.
        assert eager_noise[update].keys() == compiled_noise[update].keys()
        for name, value in eager_noise[update].items():
            assert torch.equal(compiled_noise[update][name], value), name
        assert torch.equal(compiled.update_stream.on("cpu").get_state(), eager.update_stream.on("cpu").get_state())
        assert_same_parameters(eager, compiled)
    for name in ("world_model_region", "behavior_region"):
        region = vars(compiled)[name]
        assert region.compiled_region == name
        # One graph each (one set of shapes and flags), and the update ran it: no eager fallback.
        assert len(_debug_get_cache_entry_list(region.entry_point.__code__)) == 1, name
    noise = eager_noise[0]
    assert noise["posterior"].shape == (B, T, 4, 4)
    assert noise["imagined_latent"].shape == (HORIZON, B * T, 4, 4)
    assert noise["imagined_action"].shape == (HORIZON, B * T, 2 if continuous else 3)


def test_the_update_draws_from_the_agents_stream_and_not_from_the_global_generator():
    agent = without_trainer(tiny_dreamer(False))
    drawn = recording_noise(agent)
    before = torch.get_rng_state()
    agent.training_step(tiny_batch(False), 0)
    assert torch.equal(torch.get_rng_state(), before)
    expected = torch.Generator().manual_seed(agent.update_stream.initial_seed())
    assert torch.equal(drawn[0]["posterior"], torch.rand(B, T, 4, 4, generator=expected))


@pytest.mark.parametrize("continuous", [False, True], ids=["discrete", "continuous"])
def test_one_backward_pass_of_actor_and_critic_loss_gives_each_the_gradient_of_its_own_loss(continuous):
    agent = tiny_dreamer(continuous)
    batch = tiny_batch(continuous)
    noise = agent.update_noise(batch)
    _, start, start_cont, _ = agent.world_model_region(batch, noise, diagnostics=False)
    actor_loss, critic_loss, _ = agent.behavior_region(batch, start, start_cont, noise, diagnostics=False)
    actor, critic = list(agent.actor.parameters()), list(agent.critic.net.parameters())
    own_actor = torch.autograd.grad(actor_loss, actor, retain_graph=True)
    own_critic = torch.autograd.grad(critic_loss, critic, retain_graph=True)
    joint = torch.autograd.grad(actor_loss + critic_loss, actor + critic)
    for own, both in zip(own_actor + own_critic, joint):
        torch.testing.assert_close(both, own, rtol=1e-6, atol=1e-9)
    assert any(g.abs().sum() > 0 for g in own_critic) and any(g.abs().sum() > 0 for g in own_actor)
    # The actor's loss does not reach the critic's weights (continuous actions read the critic's value).
    assert all(g is None for g in torch.autograd.grad(
        agent.behavior_region(batch, start, start_cont, noise, diagnostics=False)[0], critic, allow_unused=True))


def test_compile_choices_keep_old_configs_meaning():
    assert [compile_choice(v) for v in (False, None, "false", True, "true", "parts", "full")] == \
        [None, None, None, "parts", "parts", "parts", "full"]


def test_distributions_do_not_validate_their_arguments_even_where_torch_would():
    """torch validates distribution arguments by default; torchrl's import turns that off for the whole
    process. In a process where it is on again, every distribution we build has it off, and acting and
    updating (a straight-through one-hot fails the one-hot support check) run."""
    script = """
import torch
from worldmodels.dreamer import DreamerV3
from worldmodels.nets.distributions import OneHotStraightThrough, TruncatedNormal, bounded_normal
from worldmodels.training import EnvSpec
from model_free.sac import squashed_normal
torch.distributions.Distribution.set_default_validate_args(True)  # torch's default, without torchrl
assert torch.distributions.Normal(0.0, 1.0)._validate_args

def checked(dist):
    return [d._validate_args for d in (dist, getattr(dist, "base_dist", None)) if d is not None]

logits = torch.randn(3, 4)
dists = [OneHotStraightThrough(logits=logits), OneHotStraightThrough(logits=logits, unimix=0.01),
         bounded_normal(logits, logits), TruncatedNormal(logits, 1.0), squashed_normal(logits, logits.exp())]
for spec in (EnvSpec((3, 16, 16), 3, num_actions=3), EnvSpec((3, 16, 16), 3, action_dim=2),
             EnvSpec((3, 16, 16), 3, action_nvec=(2, 3))):
    agent = DreamerV3(size="XS", deter=32, mlp_units=32, cnn_depth=4, stoch=4, classes=4, batch_size=2, seq_len=4,
                      horizon=3, video_every=0)
    agent.build(spec)
    policy = agent.actor(torch.randn(2, agent.world_model.rssm.feat_dim))
    dists += getattr(policy, "parts", [policy])
    with agent.acting():
        action, state = agent.act(torch.zeros(2, 3, 16, 16, dtype=torch.uint8), None, torch.ones(2, dtype=torch.bool),
                                  explore=True)
        agent.act(torch.zeros(2, 3, 16, 16, dtype=torch.uint8), state, torch.zeros(2, dtype=torch.bool), explore=True)
flags = [flag for dist in dists for flag in checked(dist)]
assert flags and not any(flags), flags
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT,
                          env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]


def test_the_update_stream_is_checkpointed_and_a_checkpoint_made_before_it_existed_still_loads():
    agent = without_trainer(tiny_dreamer(False))
    batch = tiny_batch(False)
    agent.training_step(batch, 0)  # some draws before the checkpoint
    checkpoint = {"state_dict": agent.state_dict()}
    agent.on_save_checkpoint(checkpoint)
    assert "update_stream" in checkpoint["agent_generators"]
    expected = agent.update_noise(batch)
    resumed = tiny_dreamer(False)
    resumed.on_load_checkpoint(checkpoint)
    torch.manual_seed(123)  # the global generator plays no part
    for name, value in resumed.update_noise(batch).items():
        assert torch.equal(value, expected[name]), name
    older = {"state_dict": checkpoint["state_dict"], "agent_generators": {}}  # saved before the stream
    tiny_dreamer(False).on_load_checkpoint(older)  # loads; the stream starts from its seed


# ----------------------------------------------------------------------------- DrQ-v2
def recording_drqv2_noise(agent) -> list:
    drawn, draw = [], agent.update_noise
    agent.update_noise = lambda batch: drawn.append(draw(batch)) or drawn[-1]
    return drawn


@pytest.mark.parametrize("dr3_coef", [0.0, 0.1], ids=["plain", "dr3"])
def test_the_whole_drqv2_update_compiles_without_a_graph_break_and_equals_the_eager_one(dr3_coef):
    def make():
        torch.manual_seed(0)
        agent = DrQv2(batch_size=4, feature_dim=8, hidden=16, dr3_coef=dr3_coef)
        agent.build(EnvSpec((3, 32, 32), 3, action_dim=2))
        return without_trainer(agent, adam_eps=1e-3)

    eager, compiled = make(), make()
    assert compile_agent(compiled, "full", backend="aot_eager") == ["critic_region", "actor_region"]
    eager_noise, compiled_noise = recording_drqv2_noise(eager), recording_drqv2_noise(compiled)
    batch = drqv2_batch()
    for update in range(2):  # the second update runs the graphs the first one compiled
        for agent in (eager, compiled):
            torch.manual_seed(5 + update)
            agent.training_step(batch, update)
        assert torch.equal(compiled_noise[update]["actor_action"], eager_noise[update]["actor_action"])
        assert torch.equal(compiled_noise[update]["obs_shifts"]["obs"], eager_noise[update]["obs_shifts"]["obs"])
        assert_same_parameters(eager, compiled)
    for name in ("critic_region", "actor_region"):
        # One graph each, although the exploration std changes: it is an input, not a constant.
        assert len(_debug_get_cache_entry_list(vars(compiled)[name].entry_point.__code__)) == 1, name


def test_drqv2_draws_its_noise_before_the_update_as_the_update_drawing_as_it_goes_would():
    """The pre-drawn noise is the numbers an update drawing them where they are used takes from the
    global generator, in the same order: the shifts of s, of s', the target action's N(0, 1), the actor's."""
    agent = without_trainer(drqv2())
    batch = drqv2_batch()
    torch.manual_seed(7)
    noise = agent.update_noise(batch)
    torch.manual_seed(7)
    as_it_goes = [torch.randint(0, 9, (4, 2)), torch.randint(0, 9, (4, 2)), torch.randn(4, 2), torch.randn(4, 2)]
    for drawn, expected in zip([noise["obs_shifts"]["obs"], noise["next_obs_shifts"]["obs"], noise["target_action"],
                                noise["actor_action"]], as_it_goes):
        assert torch.equal(drawn, expected)


def test_alix_on_dmc_refuses_the_whole_update_compile_with_one_sentence():
    agent = ALIX(batch_size=4, feature_dim=8, hidden=16)
    agent.build(EnvSpec((3, 32, 32), 3, action_dim=2))
    with pytest.raises(ConfigError, match="compile full is not supported for ALIX"):
        compile_agent(agent, "full")
