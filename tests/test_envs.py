"""Environments: observation specs on the real Atari and DMC environments, the Atari 100k protocol,
the test tasks, lock-step autoreset, and clear errors for bad input."""

from collections import Counter

import gymnasium as gym
import numpy as np
import pytest

from worldmodels.envs import EnvConfig, make_env, make_vector_env
from worldmodels.envs.atari import LifeLossTerminal, NoopStarts
from worldmodels.errors import ConfigError


def test_atari_dqn_preset_gives_stacked_84px_gray_frames_and_the_minimal_action_set():
    env = make_env(EnvConfig("atari", "pong", preset="dqn"), seed=0)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
    assert env.observation_space.shape == (4, 84, 84)
    assert env.action_space == gym.spaces.Discrete(6)  # Pong's minimal set; the full set has 18
    ale = env.unwrapped.ale
    assert ale.getFloat("repeat_action_probability") == 0.0  # no sticky actions
    pre = next(w for w in _chain(env) if isinstance(w, gym.wrappers.AtariPreprocessing))
    assert pre.frame_skip == 4 and pre.noop_max == 0  # no single-frame no-ops: Dopamine's are agent steps
    noops = next(w for w in _chain(env) if isinstance(w, NoopStarts))
    assert noops.max_noops == 30  # Dopamine's atari_100k_runner max_noops
    frames_before = ale.getEpisodeFrameNumber()
    env.step(0)
    assert ale.getEpisodeFrameNumber() - frames_before == 4


def test_atari_world_model_preset_gives_64px_rgb_channels_first():
    env = make_env(EnvConfig("atari", "breakout", preset="world_model"), seed=0)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (3, 64, 64) and obs.dtype == np.uint8
    assert env.action_space == gym.spaces.Discrete(4)


def test_atari_training_clips_rewards_and_evaluation_keeps_true_scores():
    cfg = EnvConfig("atari", "pong", preset="dqn")
    assert make_env(cfg, training=True).spec is not None  # builds
    train_cfg, eval_cfg = cfg.resolved(), cfg.for_evaluation()
    assert train_cfg.clip_rewards and train_cfg.terminal_on_life_loss
    # Evaluation scores true rewards; a lost life still restarts the agent's stack (Dopamine), the game goes on.
    assert not eval_cfg.clip_rewards and eval_cfg.terminal_on_life_loss
    assert train_cfg.stack_padding == "zero"  # Dopamine's Atari 100k preprocessing
    assert train_cfg.noop_max == eval_cfg.noop_max == 30 and eval_cfg.noop_unit == "agent_step"


def test_life_loss_ends_the_learning_episode_but_not_the_game():
    env = make_env(EnvConfig("atari", "breakout", preset="dqn", clip_rewards=False), seed=0)
    assert any(isinstance(w, LifeLossTerminal) for w in _chain(env))
    env.reset(seed=0)
    ale = env.unwrapped.ale
    lives = ale.lives()
    rng = np.random.default_rng(0)
    for _ in range(5000):
        _, _, terminated, truncated, _ = env.step(int(rng.integers(4)))
        if terminated:
            break
    assert terminated and not truncated and ale.lives() == lives - 1
    frame_number = ale.getEpisodeFrameNumber()
    obs, _ = env.reset()
    assert ale.getEpisodeFrameNumber() == frame_number and ale.lives() == lives - 1  # no emulator reset
    # A fresh stack, zero-padded as Dopamine's agents begin each episode: the current frame, then zeros.
    assert (obs[:3] == 0).all() and obs[3].any()


def test_zero_padded_stack_at_episode_start_then_frames_shift_in():
    env = make_env(EnvConfig("atari", "pong", preset="dqn"), seed=0)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, 84, 84) and (obs[:3] == 0).all() and obs[3].any()
    obs2, *_ = env.step(0)
    assert (obs2[:2] == 0).all() and (obs2[2] == obs[3]).all() and obs2[3].any()


def test_drq_preset_takes_the_planet_action_repeat_of_each_task():
    repeats = {task: EnvConfig("dmc", task, preset="dmc_drq").resolved().action_repeat
               for task in ("cartpole-swingup", "finger-spin", "walker-walk", "cheetah-run", "reacher-easy",
                            "ball_in_cup-catch")}
    assert repeats == {"cartpole-swingup": 8, "finger-spin": 2, "walker-walk": 2, "cheetah-run": 4,
                       "reacher-easy": 4, "ball_in_cup-catch": 4}
    assert EnvConfig("dmc", "hopper-hop", preset="dmc_drq", action_repeat=4).resolved().action_repeat == 4
    with pytest.raises(ConfigError, match="set env.action_repeat for 'hopper-hop'"):
        EnvConfig("dmc", "hopper-hop", preset="dmc_drq").resolved()


def test_dmc_model_free_preset_renders_stacked_84px_rgb_with_actions_in_unit_box():
    env = make_env(EnvConfig("dmc", "walker-walk", preset="dmc_model_free"), seed=0)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (9, 84, 84) and obs.dtype == np.uint8 and obs.max() > 0
    assert env.action_space == gym.spaces.Box(-1.0, 1.0, (6,), np.float32)
    obs2, reward, terminated, truncated, _ = env.step(env.action_space.sample())
    assert obs2.shape == (9, 84, 84) and np.isfinite(reward) and not terminated
    # The stack shifts by one frame: the old newest frame is now the middle one.
    assert (obs2[3:6] == obs[6:9]).all()


def test_dmc_world_model_preset_and_quadruped_camera():
    cfg = EnvConfig("dmc", "quadruped-walk", preset="dmc_world_model").resolved()
    assert cfg.camera == 2 and cfg.action_repeat == 2 and cfg.image_size == 64
    assert EnvConfig("dmc", "walker-walk").resolved().camera == 0
    obs, _ = make_env(EnvConfig("dmc", "cartpole-swingup", preset="dmc_world_model"), seed=0).reset()
    assert obs.shape == (3, 64, 64)


def test_dmc_time_limit_is_a_truncation_not_a_termination():
    env = make_env(EnvConfig("dmc", "cartpole-swingup", image_size=16, action_repeat=8), seed=0)
    env.reset()
    steps, terminated, truncated = 0, False, False
    while not (terminated or truncated):
        _, _, terminated, truncated, info = env.step(np.zeros(1, np.float32))
        steps += 1
    assert truncated and not terminated and steps == 125  # 1000 physics steps / action repeat 8
    assert info["episode"]["l"] == 125


def test_catch_pays_plus_or_minus_one_after_seven_steps():
    env = make_env(EnvConfig("test", "catch", image_size=16, grayscale=True), seed=0)
    env.reset(seed=0)
    base = env.unwrapped
    rewards = []
    for _ in range(7):
        # Follow the ball: move toward its column.
        action = 1 + int(np.sign(base._ball[1] - base._paddle))
        _, reward, terminated, _, _ = env.step(action)
        rewards.append(reward)
    assert terminated and rewards == [0.0] * 6 + [1.0]
    env.reset(seed=1)
    base._paddle = (base._ball[1] + 4) % 8  # far from the ball, and staying there
    rewards = [env.step(1)[1] for _ in range(7)]
    assert rewards == [0.0] * 6 + [-1.0]


def test_reach_truncates_after_thirty_steps_and_rewards_minus_distance():
    env = make_env(EnvConfig("test", "reach", image_size=32), seed=0)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (3, 32, 32)
    base = env.unwrapped
    for t in range(30):
        _, reward, terminated, truncated, _ = env.step(np.zeros(2, np.float32))
        assert reward == pytest.approx(-np.linalg.norm(base._point - base._goal))
    assert truncated and not terminated


def test_reach_sparse_pays_a_tenth_only_within_a_quarter_of_the_goal():
    dense, sparse = (make_env(EnvConfig("test", task, image_size=24), seed=0) for task in ("reach", "reach_sparse"))
    assert (dense.reset(seed=3)[0] == sparse.reset(seed=3)[0]).all()  # the same board, drawn the same way
    base = sparse.unwrapped
    base._point, base._goal = np.array([0.0, 0.0]), np.array([0.55, 0.1])
    # Right at speed 0.25: x = 0.25, 0.5, 0.75, 1.0, 1.0 (the wall); distances to the goal
    # sqrt(0.3^2 + 0.1^2) = 0.316, 0.112, 0.224, 0.461, 0.461: inside the 0.25 radius twice.
    rewards = [sparse.step(np.array([1.0, 0.0], np.float32))[1] for _ in range(5)]
    assert rewards == [0.0, 0.1, 0.1, 0.0, 0.0]
    for _ in range(24):
        _, reward, terminated, truncated, _ = sparse.step(np.zeros(2, np.float32))
        assert reward == 0.0 and not truncated
    _, _, terminated, truncated, info = sparse.step(np.zeros(2, np.float32))
    assert truncated and not terminated and info["episode"]["r"] == pytest.approx(0.2)


def test_vector_env_resets_on_the_step_after_an_episode_ends():
    envs = make_vector_env(EnvConfig("test", "catch", image_size=16), num_envs=2, seed=0)
    step = envs.reset(seed=0)
    assert step.first.all()
    for t in range(7):
        step = envs.step(np.ones(2, np.int64))
        assert not step.first.any()
    assert step.terminated.all() and len(step.finished_games) == 2
    step = envs.step(np.ones(2, np.int64))
    assert step.first.all() and (step.reward == 0).all() and not step.terminated.any()


@pytest.mark.parametrize("cfg, words", [
    (EnvConfig("atari", "pongg"), ["pongg", "pong"]),
    (EnvConfig("dmc", "walker-fly"), ["walker-fly", "domain-task"]),
    (EnvConfig("test", "maze"), ["maze", "catch"]),
    (EnvConfig("atari", "pong", preset="dqnn"), ["dqnn", "preset"]),
    (EnvConfig("mujoco", "pong"), ["mujoco", "suite"]),
    (EnvConfig("dmc", "walker-walk", terminal_on_life_loss=True), ["terminal_on_life_loss"]),
])
def test_bad_environment_config_fails_with_one_sentence_naming_it(cfg, words):
    with pytest.raises(ConfigError) as error:
        make_env(cfg)
    message = str(error.value)
    assert "\n" not in message and all(w in message for w in words)


def _chain(env):
    while True:
        yield env
        if not hasattr(env, "env"):
            return
        env = env.env


def reference_space_invaders(actions, seed: int = 0) -> tuple[float, int, int]:
    """The game as gymnasium and ALE play it with no wrapper of ours: (score, agent steps, lives lost
    before the end), playing ``actions`` from the start until the game is over."""
    import ale_py

    gym.register_envs(ale_py)
    env = gym.wrappers.AtariPreprocessing(
        gym.make("ALE/SpaceInvaders-v5", frameskip=1, repeat_action_probability=0.0, full_action_space=False),
        noop_max=0, frame_skip=4, screen_size=84, terminal_on_life_loss=False)
    env.reset(seed=seed)
    score, lives = 0.0, env.unwrapped.ale.lives()
    for steps, action in enumerate(actions, 1):
        _, reward, terminated, truncated, _ = env.step(action)
        score += reward
        if terminated or truncated:
            return score, steps, lives - env.unwrapped.ale.lives()
    raise AssertionError("the game did not end within the actions given")


def test_the_training_score_is_the_whole_games_unclipped_score_over_all_its_lives():
    """Under the Atari 100k training protocol the learner sees clipped rewards and a terminal at each
    lost life, but the score logged as train/episode_return (the vector env's finished games) is the
    game's: unclipped, summed over every life, reported once when the game is over. Space Invaders pays
    5 to 30 a hit, so clipping shows."""
    envs = make_vector_env(EnvConfig("atari", "space_invaders", preset="dqn", noop_max=0), num_envs=1, seed=0)
    step, rng = envs.reset(seed=0), np.random.default_rng(0)
    played, clipped, terminals, finished = [], 0.0, 0, []
    while not finished:
        action = int(rng.integers(6))
        step = envs.step(np.array([action]))
        if step.first[0]:  # a life was lost: the env restarted the agent's episode and ignored the action
            continue
        played.append(action)
        clipped += float(step.reward[0])
        terminals += int(step.terminated[0])
        finished = step.finished_games
    score, length, lives_lost = reference_space_invaders(played)
    assert finished == [(0, score, length)]
    assert score > clipped > 0  # several hits, each worth more than the clipped 1
    assert terminals == lives_lost == 3  # one learning terminal per life: the game's three


def test_evaluation_scores_whole_games_with_true_rewards_over_all_lives():
    """run_episodes on the evaluation protocol (true rewards, the agent's episode restarted at each lost
    life) scores each game as the game itself does. A policy that always fires makes every game the
    same deterministic game, whose score the bare environment gives (no-op starts off)."""
    from conftest import ConstantPolicy
    from worldmodels.training.evaluation import run_episodes

    cfg = EnvConfig("atari", "space_invaders", preset="dqn", noop_max=0)
    scores, _, cut_short, _ = run_episodes(ConstantPolicy(action=1), cfg.for_evaluation(), episodes=2, seed=0)
    score, _, lives_lost = reference_space_invaders([1] * 27_000)
    assert scores == [score, score] and cut_short == 0 and lives_lost == 3 and score > 30


def test_environments_in_their_own_processes_step_exactly_as_in_one_process():
    cfg = EnvConfig("test", "catch", image_size=16, grayscale=True, frame_stack=2)
    together, apart = make_vector_env(cfg, 3, seed=5), make_vector_env(cfg, 3, seed=5, processes=True)
    try:
        assert apart.asynchronous and not together.asynchronous
        rng = np.random.default_rng(0)
        first = [together.reset(seed=9), apart.reset(seed=9)]
        assert np.array_equal(first[0].obs, first[1].obs)
        games = 0
        for _ in range(60):  # catch's games last 7 steps: every environment restarts several times
            actions = together.random_actions(rng)
            apart.step_async(actions)
            assert np.array_equal(apart.stepping, together.stepping)  # known before the step completes
            one, other = together.step(actions), apart.step_wait()
            for field in ("obs", "reward", "terminated", "truncated", "first"):
                assert np.array_equal(getattr(one, field), getattr(other, field)), field
            assert one.finished_games == other.finished_games
            games += len(one.finished_games)
        assert games >= 15
    finally:
        together.close()
        apart.close()


def test_an_environment_that_cannot_be_made_in_its_process_fails_with_its_own_sentence():
    with pytest.raises(ConfigError, match="pongg"):
        make_vector_env(EnvConfig("atari", "pongg"), 2, processes=True)


@pytest.mark.parametrize("training", [True, False])
def test_noop_starts_play_a_uniform_0_to_29_agent_steps_at_every_new_game(training):
    """Dopamine's atari_100k_runner: randint(0, max_noops) no-op agent steps of 4 frames each at every
    new game, in training and in evaluation. One-step games (a time limit of 1) give many resets."""
    env = make_env(EnvConfig("atari", "boxing", preset="dqn", max_episode_steps=1), seed=3, training=training)
    ale, counts = env.unwrapped.ale, []
    for game in range(300):
        _, info = env.reset(seed=3 if game == 0 else None)
        counts.append(info["noops"])
        assert ale.getEpisodeFrameNumber() == 4 * info["noops"]  # the emulator played them, 4 frames each
        _, _, _, truncated, _ = env.step(0)
        assert truncated
    assert min(counts) == 0 and max(counts) == 29 and len(set(counts)) == 30
    assert 12.0 < np.mean(counts) < 17.0  # uniform on 0..29: mean 14.5, standard error about 0.5


def _trajectories(noop_max: int | None, games: int = 100) -> Counter:
    """How often each 30-frame start of an evaluation game occurs, for a policy that always punches."""
    cfg = EnvConfig("atari", "boxing", preset="dqn", max_episode_steps=30, noop_max=noop_max)
    env, seen = make_env(cfg, seed=0, training=False), Counter()
    for game in range(games):
        obs, _ = env.reset(seed=0 if game == 0 else None)
        frames, done = [obs], False
        while not done:
            obs, _, terminated, truncated, _ = env.step(1)
            frames.append(obs)
            done = terminated or truncated
        seen[np.stack(frames).tobytes()] += 1
    return seen


def test_a_fixed_policy_plays_different_evaluation_games_with_noop_starts_and_nearly_one_game_without():
    without = _trajectories(noop_max=0)  # the ALE without sticky actions: (nearly) deterministic
    assert len(without) <= 2 and max(without.values()) >= 80
    with_noops = _trajectories(noop_max=None)  # the preset's no-op starts: 30 possible starts
    assert len(with_noops) >= 20 and max(with_noops.values()) <= 10
