"""torch.compile and bf16 autocast change how an update is computed, not what it computes: a compiled
update equals the eager one (DreamerV3, DrQ-v2), a bf16 DreamerV3 update stays near the float32 one,
and an agent that names nothing to compile is refused with one sentence."""

import pytest
import torch
from torch._dynamo.eval_frame import _debug_get_cache_entry_list

from model_free import ALIX, SAC, DrQv2, Rainbow
from worldmodels.dreamer import DreamerV3
from worldmodels.errors import ConfigError
from worldmodels.training import Agent, EnvSpec
from worldmodels.training.compile import compile_agent


def without_trainer(agent, adam_eps=None):
    """``training_step`` outside Lightning: plain optimizers and backward, metrics kept in ``logged``.
    ``adam_eps``: every optimizer's epsilon, for comparisons (see ``assert_same_parameters``)."""
    optimizers = agent.configure_optimizers()
    if adam_eps is not None:
        for optimizer in optimizers if isinstance(optimizers, list) else [optimizers]:
            for group in optimizer.param_groups:
                group["eps"] = adam_eps
    agent.optimizers = lambda: optimizers
    agent.manual_backward = lambda loss: loss.backward()
    agent.logged = {}
    agent.log_scalars = agent.logged.update
    return agent


def dreamer(continuous=False):
    torch.manual_seed(0)
    agent = DreamerV3(size="XS", batch_size=2, seq_len=8, horizon=5, video_every=0)
    agent.build(EnvSpec((3, 64, 64), 3, action_dim=2) if continuous else EnvSpec((3, 64, 64), 3, num_actions=4))
    return agent


def dreamer_batch(continuous=False):
    g = torch.Generator().manual_seed(1)
    b, t = 2, 8
    first, terminal = torch.zeros(b, t, dtype=torch.bool), torch.zeros(b, t, dtype=torch.bool)
    terminal[1, 4], first[1, 5] = True, True  # an episode ends inside the second sequence
    action = torch.rand(b, t, 2, generator=g) * 2 - 1 if continuous else torch.randint(0, 4, (b, t), generator=g)
    return {"obs": torch.randint(0, 256, (b, t, 3, 64, 64), dtype=torch.uint8, generator=g), "action": action,
            "reward": torch.randn(b, t, generator=g), "terminal": terminal, "first": first, "last": terminal.clone()}


def drqv2():
    torch.manual_seed(0)
    agent = DrQv2(batch_size=4, feature_dim=8, hidden=16)
    agent.build(EnvSpec((3, 32, 32), 3, action_dim=2))
    return agent


def drqv2_batch():
    g = torch.Generator().manual_seed(1)
    return {"obs": torch.randint(0, 256, (4, 3, 32, 32), generator=g, dtype=torch.uint8),
            "next_obs": torch.randint(0, 256, (4, 3, 32, 32), generator=g, dtype=torch.uint8),
            "action": torch.rand(4, 2, generator=g) * 2 - 1, "reward": torch.randn(4, generator=g),
            "discount": torch.full((4,), 0.99 ** 3)}


def compiled_callables(agent) -> dict:
    """The compiled function that stands in for each target (its module's ``forward`` or the method)."""
    return {name: vars(target)["forward"] if isinstance(target, torch.nn.Module) else target
            for name, target in agent.compiled_modules().items()}


def graphs(agent) -> dict[str, int]:
    """Compiled graphs held by each target (dynamo's cache of the target's own entry point)."""
    return {name: len(_debug_get_cache_entry_list(compiled._torchdynamo_orig_callable.__code__))
            for name, compiled in compiled_callables(agent).items()}


def assert_same_parameters(eager, compiled):
    # Adam's first step moves each weight by lr * g / (|g| + eps): with the agents' eps (1e-8) a
    # gradient entry near 1e-8 turns float rounding (compiled kernels sum in another order: about
    # 1e-7 of the value) into a difference of up to lr, the whole step. The agents are built with
    # eps 1e-3 here, where the step is a smooth function of g (at most lr / eps = 0.1 x its change),
    # so the weights agree as closely as the gradients do. atol 1e-6 is 1% of one step at lr 1e-4
    # (a step that went wrong fails it); rtol 1e-4 allows for float32 rounding on weights near 1.
    assert list(eager.state_dict()) == list(compiled.state_dict())  # checkpoints keep their keys
    for (name, p), (_, q) in zip(eager.named_parameters(), compiled.named_parameters()):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-6, msg=lambda m: f"{name}: {m}")
    for name, value in eager.logged.items():
        torch.testing.assert_close(torch.as_tensor(compiled.logged[name]), torch.as_tensor(value), rtol=1e-4,
                                   atol=1e-6, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("make, make_batch, backend", [(dreamer, dreamer_batch, "aot_eager"),
                                                     (drqv2, drqv2_batch, "inductor")], ids=["DreamerV3", "DrQ-v2"])
def test_a_compiled_update_equals_the_eager_one(make, make_batch, backend):
    """Two agents built from one seed, one compiled, one update on one batch from one RNG state.
    DrQ-v2 compiles with inductor, the backend ``compile: true`` uses (about 50 s of one core with an
    empty inductor cache). DreamerV3's targets are more and longer, and would cost inductor a larger
    share of the quick subset's budget from an empty cache: they compile with ``aot_eager`` here, which
    traces them as inductor would (dynamo with ``fullgraph=True``, AOTAutograd's joint forward and
    backward graphs) and runs the graphs with eager kernels; inductor's kernels are tested on DrQ-v2."""
    eager, compiled = without_trainer(make(), adam_eps=1e-3), without_trainer(make(), adam_eps=1e-3)
    # a graph break in a declared target fails the test
    names = compile_agent(compiled, fullgraph=True, backend=backend)
    assert names == list(eager.compiled_modules())
    batch = make_batch()
    for agent in (eager, compiled):
        torch.manual_seed(5)
        agent.training_step(batch, 0)
    assert min(graphs(compiled).values()) >= 1, graphs(compiled)  # every target ran compiled, none eagerly
    assert_same_parameters(eager, compiled)
    compiled.load_state_dict(eager.state_dict())  # an eager checkpoint loads into a compiled agent
    before = compiled_callables(compiled)
    again = compile_agent(compiled, backend=backend)
    assert again == names and compiled_callables(compiled) == before  # nothing compiled twice


@pytest.mark.parametrize("make, expected", [
    (lambda: SAC(batch_size=4, feature_dim=8, hidden=16, decoder=True),
     ["critic.encoder.convs", "critic_target.encoder.convs", "actor", "critic.features", "critic", "critic_target",
      "decoder"]),
    (lambda: ALIX(batch_size=4, feature_dim=8, hidden=16), ["actor.mean_action", "critic.features", "critic", "critic_target"]),
    (lambda: Rainbow(noisy=False, num_atoms=1, hidden=16, target_update_period=4),
     ["q.encoder", "q.features_and_kl", "q.logits", "q", "q_target"]),
    (lambda: Rainbow(hidden=16), ["q.encoder", "q_target.encoder"]),  # DER: noisy Dense layers stay eager
], ids=["SAC+AE", "A-LIX", "NDDQN", "DER"])
def test_each_agent_compiles_only_its_pure_parts_and_keeps_its_state_dict_keys(make, expected):
    """Compilation is lazy: this names and wraps the targets without compiling them (each agent's
    update was compared with its eager one by hand, on CPU: equal as in the test above)."""
    agent = make()
    discrete = isinstance(agent, Rainbow)
    agent.build(EnvSpec((4, 84, 84), 1, num_actions=3) if discrete else EnvSpec((3, 32, 32), 3, action_dim=2))
    keys = list(agent.state_dict())
    assert compile_agent(agent) == expected
    assert list(agent.state_dict()) == keys


def test_compile_of_an_agent_that_names_nothing_to_compile_is_refused_with_one_sentence():
    class Plain(Agent):
        pass

    agent = Plain()
    agent.build(EnvSpec((3, 64, 64), 3, num_actions=4))
    with pytest.raises(ConfigError, match=r"^compile is not supported for Plain, which declares no compiled_modules; "
                                          r"set compile to false\.$"):
        compile_agent(agent)
    # A-LIX-Atari: noisy Dense layers and a mixing encoder, every layer draws noise or mixes.
    alix_atari = Rainbow(alix=True, noisy=True, hidden=16)
    alix_atari.build(EnvSpec((4, 84, 84), 1, num_actions=3))
    with pytest.raises(ConfigError, match=r"^compile is not supported for Rainbow as configured, .*; set compile to false\.$"):
        compile_agent(alix_atari)


# ---------------------------------------------------------------------------------------------- bf16

# bf16 keeps 8 bits of mantissa (relative rounding 2^-9, 0.2%, per operation), and the latent and action
# draws and the continue flags (the continue head's mode) are discrete functions of rounded logits: a
# logit that bf16 moves across a tie or across 0 flips a draw or a flag, and with it every later step
# of that trajectory. Measured over 6 seeds x {discrete, continuous}, first update from initialisation
# (the reference's uniform output layers): the world-model loss within 0.03% of float32 (image 0.03%,
# KL 0.3%, continue 2.2%: a freshly initialised head whose logits sit near 0), the critic and actor
# losses within 9% (flipped continue flags reweight whole imagined trajectories). The tolerances leave
# at least 2.5x those.
BF16_RTOL = {"wm/loss": 5e-2, "wm/image_loss": 5e-2, "wm/reward_loss": 5e-2, "wm/kl_dyn": 5e-2, "wm/kl_rep": 5e-2,
             "wm/continue_loss": 1e-1, "critic/loss": 0.25, "critic/td_loss": 0.25, "actor/loss": 0.25}


@pytest.mark.parametrize("continuous", [False, True], ids=["discrete", "continuous"])
def test_a_bf16_dreamer_update_stays_near_float32_and_decodes_two_hot_values_in_float32(continuous):
    """The update as Lightning's ``bf16-mixed`` runs it: MixedPrecision.train_step_context wraps the
    whole ``training_step``, manual backward and optimizer steps included, in
    ``torch.autocast(device, dtype=torch.bfloat16, cache_enabled=False)``; no gradient scaler."""
    batch = dreamer_batch(continuous)
    fp32, bf16 = without_trainer(dreamer(continuous)), without_trainer(dreamer(continuous))
    torch.manual_seed(5)
    fp32.training_step(batch, 0)
    torch.manual_seed(5)
    with torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=False):
        bf16.training_step(batch, 0)

    for name, value in bf16.logged.items():
        assert torch.isfinite(torch.as_tensor(value)).all(), name
    for name, rtol in BF16_RTOL.items():
        torch.testing.assert_close(bf16.logged[name], fp32.logged[name], rtol=rtol, atol=0, msg=lambda m: f"{name}: {m}")
    # Every loss is float32: the two-hot heads' decoded values (imagined rewards, critic values) and
    # cross-entropies, the latents' KL and entropies, the actor's log-probabilities and entropy ...
    for name, value in bf16.logged.items():
        if name != "critic/feature_dot":  # a diagnostic (DR3's dot product) of the critic's bf16 features
            assert torch.as_tensor(value).dtype == torch.float32, name
    # ... while the networks themselves did run in bf16 (autocast was on), and the weights stay float32.
    feat = torch.randn(3, bf16.world_model.rssm.feat_dim)
    with torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=False):
        assert bf16.world_model.reward_head(feat).dtype == torch.bfloat16
        assert bf16.world_model.reward(feat).dtype == torch.float32
        assert bf16.critic.value(feat).dtype == torch.float32
        assert bf16.critic.value(feat, slow=True).dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in bf16.parameters())
