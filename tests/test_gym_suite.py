"""The gym suite (any Gymnasium environment), observation keys and routing, the shared wrappers on dict
observations, DMC and test-task states, Crafter, MinAtar, and one sentence for each bad input. Small
environments are defined here (registered under WorldmodelsTest/) and in tests/envs_for_tests.py."""

import gymnasium as gym
import numpy as np
import pytest

from worldmodels.envs import EnvConfig, make_env
from worldmodels.envs.crafter_suite import ACHIEVEMENTS, RANDOM_AGENT, achievement_extras, crafter_score
from worldmodels.errors import ConfigError
from worldmodels.training.spec import EnvSpec


class SpaceEnv(gym.Env):
    """Observes ``observe(t)`` of ``observation_space`` at step t of 5-step episodes (truncated), pays 1
    a step, keeps the actions it is given, and renders ``frame``."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, observation_space, observe, action_space=None, frame=None, render_mode=None, episode=5):
        self.observation_space = observation_space
        self.action_space = action_space or gym.spaces.Discrete(2)
        self.observe, self.frame, self.render_mode, self.episode = observe, frame, render_mode, episode
        self.actions = []

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.observe(0), {}

    def step(self, action):
        self.actions.append(action)
        self.t += 1
        return self.observe(self.t), 1.0, self.t >= self.episode + 10, self.t >= self.episode, {}

    def render(self):
        return self.frame


def gym_env(name: str, space, observe, env_kwargs=None, **fields):
    """The gym suite's environment of a SpaceEnv registered as WorldmodelsTest/<name>-v0."""
    env_id = f"WorldmodelsTest/{name}-v0"
    if env_id not in gym.registry:
        gym.register(id=env_id, entry_point=lambda **kw: SpaceEnv(space, observe, **{**(env_kwargs or {}), **kw}))
    return make_env(EnvConfig("gym", env_id, **fields), seed=0)


def first_obs(name, space, value, **fields):
    env = gym_env(name, space, lambda t: value, **fields)
    return env, env.reset(seed=0)[0]


HWC = np.arange(6 * 5 * 3, dtype=np.uint8).reshape(6, 5, 3)  # pixel (h, w, c) holds (5h + w) * 3 + c


# ---- making an environment: a registered id, a class, a factory ----

def test_a_registered_id_gives_its_own_observations_and_actions_and_takes_kwargs():
    env = make_env(EnvConfig("gym", "CartPole-v1"), seed=0)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4,) and obs.dtype == np.float32 and env.action_space == gym.spaces.Discrete(2)
    assert env.spec.max_episode_steps == 500  # the environment's own limit stays (max_episode_steps None)
    short = make_env(EnvConfig("gym", "CartPole-v1", kwargs={"max_episode_steps": 3}), seed=0)
    short.reset(seed=0)
    assert [short.step(i % 2)[3] for i in range(3)] == [False, False, True]  # gym.make's own limit, at 3


def test_an_id_that_a_module_registers_is_made_after_importing_it():
    env = make_env(EnvConfig("gym", "envs_for_tests:WorldmodelsTest/Counter-v0"), seed=0)
    assert env.reset(seed=0)[0].tolist() == [7.0]


def test_an_entry_point_class_is_made_with_kwargs_given_as_json():
    env = make_env(EnvConfig("gym", entry_point="envs_for_tests:Counter", kwargs='{"start": 3}'), seed=0)
    obs, _ = env.reset(seed=0)
    assert obs.tolist() == [3.0] and env.step(0)[0].tolist() == [4.0]


def test_a_factory_function_is_made_with_kwargs():
    env = make_env(EnvConfig("gym", make="envs_for_tests:make_counter", kwargs={"start": -2.0}), seed=0)
    assert env.reset(seed=0)[0].tolist() == [-2.0]


# ---- observation spaces to keys ----

def test_an_hwc_uint8_image_becomes_channels_first():
    env, obs = first_obs("ImageHWC", gym.spaces.Box(0, 255, (6, 5, 3), np.uint8), HWC)
    assert obs.shape == (3, 6, 5) and obs.dtype == np.uint8
    assert obs[2, 1, 4] == (5 * 1 + 4) * 3 + 2  # = 29: channel 2 of pixel (1, 4)
    assert env.observation_space == gym.spaces.Box(0, 255, (3, 6, 5), np.uint8)


def test_a_chw_uint8_image_stays_and_a_2d_one_gains_a_channel():
    chw = HWC.transpose(2, 0, 1).copy()
    _, obs = first_obs("ImageCHW", gym.spaces.Box(0, 255, (3, 6, 5), np.uint8), chw)
    assert obs.shape == (3, 6, 5) and obs[2, 1, 4] == 29
    _, gray = first_obs("Image2D", gym.spaces.Box(0, 255, (6, 5), np.uint8), HWC[:, :, 0])
    assert gray.shape == (1, 6, 5) and gray[0, 1, 4] == 27


def test_a_float64_matrix_becomes_a_flat_float32_vector():
    _, obs = first_obs("Matrix", gym.spaces.Box(-1, 1, (2, 3), np.float64), np.array([[0.5, -1, 0], [1, 0.25, 0]]))
    assert obs.dtype == np.float32 and obs.tolist() == [0.5, -1.0, 0.0, 1.0, 0.25, 0.0]


def test_discrete_becomes_a_one_hot_counted_from_its_start():
    env, obs = first_obs("Discrete", gym.spaces.Discrete(4, start=1), 3)
    assert obs.dtype == np.float32 and obs.tolist() == [0.0, 0.0, 1.0, 0.0]  # 3 is the third of 1, 2, 3, 4
    assert env.observation_space == gym.spaces.Box(0.0, 1.0, (4,), np.float32)


def test_multibinary_becomes_a_float32_vector():
    _, obs = first_obs("MultiBinary", gym.spaces.MultiBinary(3), np.array([1, 0, 1], np.int8))
    assert obs.dtype == np.float32 and obs.tolist() == [1.0, 0.0, 1.0]


def test_a_dict_gives_one_key_per_member_in_the_spaces_order():
    space = gym.spaces.Dict({"speed": gym.spaces.Box(-5, 5, (1,), np.float32),
                             "image": gym.spaces.Box(0, 255, (6, 5, 3), np.uint8), "mode": gym.spaces.Discrete(3)})
    env, obs = first_obs("Dict", space, {"speed": np.array([2.5], np.float32), "image": HWC, "mode": 2})
    assert list(obs) == list(env.observation_space.spaces) == ["image", "mode", "speed"]  # gymnasium sorts a dict
    assert obs["image"].shape == (3, 6, 5) and obs["mode"].tolist() == [0.0, 0.0, 1.0]
    assert obs["speed"].tolist() == [2.5]


def test_nested_dicts_join_their_names_with_a_slash():
    space = gym.spaces.Dict({"robot": gym.spaces.Dict({"arm": gym.spaces.Box(-1, 1, (2,), np.float32),
                                                       "camera": gym.spaces.Box(0, 255, (6, 5, 3), np.uint8)}),
                             "goal": gym.spaces.Box(-1, 1, (2,), np.float32)})
    value = {"robot": {"arm": np.array([0.1, 0.2], np.float32), "camera": HWC}, "goal": np.array([1, -1], np.float32)}
    _, obs = first_obs("NestedDict", space, value)
    assert list(obs) == ["goal", "robot/arm", "robot/camera"]
    assert obs["robot/arm"].tolist() == pytest.approx([0.1, 0.2]) and obs["robot/camera"][2, 1, 4] == 29


def test_tuples_number_their_members():
    top = gym.spaces.Tuple((gym.spaces.Box(-1, 1, (2,), np.float32), gym.spaces.Discrete(2)))
    _, obs = first_obs("Tuple", top, (np.array([0.5, 0.0], np.float32), 1))
    assert list(obs) == ["0", "1"] and obs["0"].tolist() == [0.5, 0.0] and obs["1"].tolist() == [0.0, 1.0]
    inner = gym.spaces.Dict({"sensors": gym.spaces.Tuple((gym.spaces.Discrete(2), gym.spaces.MultiBinary(2)))})
    _, obs = first_obs("DictOfTuple", inner, {"sensors": (0, np.array([0, 1], np.int8))})
    assert list(obs) == ["sensors/0", "sensors/1"] and obs["sensors/0"].tolist() == [1.0, 0.0]


# ---- actions ----

def test_discrete_and_multidiscrete_actions_pass_unchanged():
    env = gym_env("MultiDiscreteActions", gym.spaces.Box(-1, 1, (1,), np.float32), lambda t: np.zeros(1, np.float32),
                  env_kwargs={"action_space": gym.spaces.MultiDiscrete([3, 2])})
    assert env.action_space == gym.spaces.MultiDiscrete([3, 2])
    env.reset(seed=0)
    env.step(np.array([2, 1]))
    assert env.unwrapped.actions[-1].tolist() == [2, 1]


def test_a_bounded_box_action_is_rescaled_from_the_unit_box():
    env = gym_env("BoxActions", gym.spaces.Box(-1, 1, (1,), np.float32), lambda t: np.zeros(1, np.float32),
                  env_kwargs={"action_space": gym.spaces.Box(np.array([0.0, -2.0]), np.array([10.0, 2.0]),
                                                             dtype=np.float64)})
    assert env.action_space == gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    env.reset(seed=0)
    # low + (a + 1) / 2 * (high - low): [0 + 0 * 10, -2 + 0.75 * 4] and [0 + 1 * 10, -2 + 0 * 4]
    env.step(np.array([-1.0, 0.5], np.float32))
    env.step(np.array([1.0, -1.0], np.float32))
    assert [a.tolist() for a in env.unwrapped.actions] == [[0.0, 1.0], [10.0, -2.0]]
    assert env.unwrapped.actions[0].dtype == np.float64  # the environment's own dtype


# ---- routing ----

DICT = gym.spaces.Dict({"image": gym.spaces.Box(0, 255, (6, 5, 3), np.uint8),
                        "grid": gym.spaces.Box(0, 1, (4, 4, 2), bool), "speed": gym.spaces.Box(-5, 5, (1,), np.float32)})
GRID = np.zeros((4, 4, 2), bool)
GRID[1, 2, 0] = GRID[3, 3, 1] = True
DICT_VALUE = {"image": HWC, "grid": GRID, "speed": np.array([2.5], np.float32)}


def test_by_default_uint8_images_go_to_the_cnn_and_everything_else_to_the_mlp():
    env, obs = first_obs("Routing", DICT, DICT_VALUE)
    spec = EnvSpec.from_spaces(env.observation_space, env.action_space, 1, 1)
    assert [k.name for k in spec.image_keys] == ["image"] and [k.name for k in spec.vector_keys] == ["grid", "speed"]
    assert obs["grid"].shape == (32,) and obs["grid"].sum() == 2.0  # a bool grid: a vector of 0s and 1s


def test_regexes_route_keys_and_drop_those_they_do_not_match():
    env, obs = first_obs("Routing", DICT, DICT_VALUE, cnn_keys="grid", mlp_keys="image")
    assert list(obs) == ["grid", "image"]  # speed, matched by neither, is dropped
    # The bool grid (H, W, C) = (4, 4, 2) is an image of 0 and 255, channels first.
    assert obs["grid"].shape == (2, 4, 4) and obs["grid"].dtype == np.uint8
    assert obs["grid"][0, 1, 2] == 255 and obs["grid"][1, 3, 3] == 255 and obs["grid"].sum() == 2 * 255
    # The image flattened in its own (H, W, C) order, as float32 0..255.
    assert obs["image"].dtype == np.float32 and obs["image"].shape == (90,) and obs["image"][:4].tolist() == [0, 1, 2, 3]
    spec = EnvSpec.from_spaces(env.observation_space, env.action_space, 1, 1)
    assert [k.kind for k in spec.obs_keys] == ["image", "vector"]


# ---- shared wrappers ----

def test_images_are_made_gray_and_resized_with_the_luma_of_each_pixel():
    frame = np.zeros((32, 32, 3), np.uint8)
    frame[:] = (100, 150, 200)
    _, obs = first_obs("Gray", gym.spaces.Box(0, 255, (32, 32, 3), np.uint8), frame, grayscale=True, image_size=16)
    # 0.299 * 100 + 0.587 * 150 + 0.114 * 200 = 140.75, rounded: 141; a uniform frame stays uniform resized.
    assert obs.shape == (1, 16, 16) and (obs == 141).all()


def test_action_repeat_sums_rewards_and_stops_at_the_episode_end_and_the_limit_counts_agent_steps():
    env = make_env(EnvConfig("gym", entry_point="envs_for_tests:Counter", action_repeat=2), seed=0)
    env.reset(seed=0)
    steps = [env.step(0) for _ in range(3)]  # the counter's 5-step episode: 2 + 2 + 1 frames
    assert [s[1] for s in steps] == [2.0, 2.0, 1.0] and [s[3] for s in steps] == [False, False, True]
    assert steps[-1][4]["episode"]["l"] == 3 and steps[-1][4]["episode"]["r"] == 5.0
    limited = make_env(EnvConfig("gym", entry_point="envs_for_tests:Counter", action_repeat=2, max_episode_steps=1), 0)
    limited.reset(seed=0)
    assert limited.step(0)[3]  # truncated after one agent step of 2 frames


def stacked_dict(padding):
    space = gym.spaces.Dict({"frame": gym.spaces.Box(0, 255, (1, 2, 2), np.uint8),
                             "vector": gym.spaces.Box(-100, 100, (2,), np.float32)})
    observe = lambda t: {"frame": np.full((1, 2, 2), t + 1, np.uint8), "vector": np.array([t, 10 * t], np.float32)}
    env = gym_env("Stack", space, observe, frame_stack=3, stack_padding=padding)
    first, _ = env.reset(seed=0)
    return env, first, env.step(0)[0]


def test_a_dict_frame_stack_repeats_the_first_frame_of_images_along_c_and_vectors_along_d():
    env, first, second = stacked_dict("repeat")
    assert env.observation_space["frame"].shape == (3, 2, 2) and env.observation_space["vector"].shape == (6,)
    assert first["frame"][:, 0, 0].tolist() == [1, 1, 1] and first["vector"].tolist() == [0, 0, 0, 0, 0, 0]
    assert second["frame"][:, 0, 0].tolist() == [1, 1, 2] and second["vector"].tolist() == [0, 0, 0, 0, 1, 10]
    assert env.observation_space["vector"].low.tolist() == [-100] * 6
    spec = EnvSpec.from_spaces(env.observation_space, env.action_space, 3, 1)
    assert spec.frame_stack == 3 and [k.frame_shape for k in spec.obs_keys] == [(1, 2, 2), (2,)]


def test_a_dict_frame_stack_pads_with_zeros():
    _, first, second = stacked_dict("zero")
    assert first["frame"][:, 0, 0].tolist() == [0, 0, 1] and first["vector"].tolist() == [0, 0, 0, 0, 0, 0]
    assert second["frame"][:, 0, 0].tolist() == [0, 1, 2] and second["vector"].tolist() == [0, 0, 0, 0, 1, 10]


# ---- rendered pixels ----

def test_render_pixels_adds_the_resized_frame_beside_a_bare_observation():
    frame = np.zeros((40, 60, 3), np.uint8)
    frame[:] = (10, 20, 30)
    env = gym_env("Rendered", gym.spaces.Box(-5, 5, (2,), np.float32), lambda t: np.array([t, -t], np.float32),
                  env_kwargs={"frame": frame}, render_pixels=True, image_size=16)
    obs, _ = env.reset(seed=0)
    obs, *_ = env.step(0)
    assert list(obs) == ["observation", "pixels"] and obs["observation"].tolist() == [1.0, -1.0]
    assert obs["pixels"].shape == (3, 16, 16) and obs["pixels"][:, 5, 7].tolist() == [10, 20, 30]


def test_render_pixels_on_cartpole():
    pytest.importorskip("pygame", reason="CartPole renders with pygame (gymnasium[classic-control])")
    env = make_env(EnvConfig("gym", "CartPole-v1", render_pixels=True, image_size=64), seed=0)
    obs, _ = env.reset(seed=0)
    assert obs["observation"].shape == (4,) and obs["pixels"].shape == (3, 64, 64) and obs["pixels"].max() > 0


# ---- DMC and test-task states ----

def test_dmc_states_are_the_flattened_observation_dict_walker_24_values():
    env = make_env(EnvConfig("dmc", "walker-walk", observation="states"), seed=0)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (24,) and obs.dtype == np.float32  # orientations 14, height 1, velocity 9
    physics = env.unwrapped._env.physics
    assert obs[14] == pytest.approx(physics.torso_height())
    assert obs[15:].tolist() == pytest.approx(physics.velocity().tolist())


def test_dmc_both_gives_pixels_and_the_state():
    env = make_env(EnvConfig("dmc", "walker-walk", observation="both", image_size=32), seed=0)
    obs, _ = env.reset(seed=0)
    assert list(obs) == ["pixels", "observation"]
    assert obs["pixels"].shape == (3, 32, 32) and obs["pixels"].max() > 0 and obs["observation"].shape == (24,)


def test_catch_states_are_one_hot_ball_row_ball_column_and_paddle_column():
    env = make_env(EnvConfig("test", "catch", observation="states"), seed=0)
    obs, _ = env.reset(seed=0)
    base = env.unwrapped

    def one_hot(*cells):
        code = [0.0] * 24
        for part, cell in enumerate(cells):
            code[8 * part + cell] = 1.0
        return code

    assert obs.tolist() == one_hot(0, base._ball[1], base._paddle)
    paddle = base._paddle
    obs, *_ = env.step(2)  # the ball falls a row, the paddle moves right (unless at the wall)
    assert base._paddle == min(paddle + 1, 7)
    assert obs.tolist() == one_hot(1, base._ball[1], base._paddle)


def test_reach_states_are_the_point_then_the_goal():
    env = make_env(EnvConfig("test", "reach", observation="both", image_size=16), seed=0)
    obs, _ = env.reset(seed=0)
    base = env.unwrapped
    assert obs["observation"].tolist() == pytest.approx([*base._point, *base._goal])
    assert obs["pixels"].shape == (3, 16, 16)


# ---- Crafter and MinAtar ----

def test_crafter_observes_64px_rgb_and_reports_achievements_at_the_episode_end():
    # A 24x24 world instead of 64x64: it changes only how long the world takes to generate (seconds here).
    cfg = EnvConfig("crafter", max_episode_steps=4, frame_stack=2, kwargs={"area": [24, 24]})
    env = make_env(cfg, seed=0)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (6, 64, 64) and obs.dtype == np.uint8 and env.action_space == gym.spaces.Discrete(17)
    spec = EnvSpec.from_spaces(env.observation_space, env.action_space, 2, 1)
    assert spec.obs_shape == (6, 64, 64) and spec.frame_channels == 3 and spec.num_actions == 17
    infos = [env.step(0)[4] for _ in range(4)]  # noop: nothing unlocked
    assert all("episode_extras" not in info for info in infos[:3])
    assert infos[3]["episode_extras"] == {f"achievement_{name}": 0.0 for name in ACHIEVEMENTS}
    assert len(ACHIEVEMENTS) == 22


def test_achievement_extras_mark_those_unlocked_at_least_once():
    counts = {name: 0 for name in ACHIEVEMENTS} | {"collect_wood": 3, "wake_up": 1}
    extras = achievement_extras({"achievements": counts})
    assert {k for k, v in extras.items() if v == 1.0} == {"achievement_collect_wood", "achievement_wake_up"}
    assert sum(extras.values()) == 2.0


def test_crafter_score_is_the_geometric_mean_of_one_plus_the_rates_minus_one():
    assert crafter_score([50.0] * 22) == pytest.approx(50.0)  # equal rates: the rate itself
    assert crafter_score([0.0] * 22) == 0.0
    # One achievement always unlocked: (1 + 100)^(1/22) - 1 = e^(ln(101) / 22) - 1 = 0.23341.
    assert crafter_score([100.0] + [0.0] * 21) == pytest.approx(101 ** (1 / 22) - 1) == pytest.approx(0.23341, abs=1e-5)
    assert crafter_score({name: 10.0 for name in ACHIEVEMENTS}) == pytest.approx(10.0)
    assert RANDOM_AGENT == {"score_percent": 1.6, "reward": 2.1, "mean_episode_return": 1.38}
    with pytest.raises(ConfigError, match="22"):
        crafter_score([10.0] * 21)


def test_minatar_breakout_steps_with_its_grid_as_a_vector_or_as_an_image():
    env = make_env(EnvConfig("gym", "MinAtar/Breakout-v1"), seed=0)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (400,) and obs.dtype == np.float32 and set(obs.tolist()) <= {0.0, 1.0}
    assert env.action_space == gym.spaces.Discrete(3)  # v1: the minimal action set
    obs, reward, terminated, truncated, _ = env.step(1)
    grid = env.unwrapped.game.state()  # (10, 10, 4) bool
    assert obs.tolist() == grid.astype(np.float32).reshape(-1).tolist()
    image_env = make_env(EnvConfig("gym", "MinAtar/Breakout-v1", cnn_keys="obs"), seed=0)
    image, _ = image_env.reset(seed=0)
    grid = image_env.unwrapped.game.state()
    assert image.shape == (4, 10, 10) and image.dtype == np.uint8
    assert (image == grid.transpose(2, 0, 1).astype(np.uint8) * 255).all()


# ---- every environment has a spec ----

@pytest.mark.parametrize("cfg", [
    EnvConfig("gym", "CartPole-v1", frame_stack=2),
    EnvConfig("gym", "Pendulum-v1"),
    EnvConfig("gym", "MinAtar/Breakout-v1", cnn_keys="obs", frame_stack=2),
    EnvConfig("test", "catch", observation="both", image_size=16, frame_stack=2),
    EnvConfig("dmc", "cartpole-swingup", observation="states"),
], ids=lambda cfg: f"{cfg.suite}-{cfg.task}")
def test_every_environment_made_has_an_env_spec(cfg):
    env = make_env(cfg, seed=0)
    resolved = cfg.resolved()
    spec = EnvSpec.from_spaces(env.observation_space, env.action_space, resolved.frame_stack, resolved.action_repeat)
    obs, _ = env.reset(seed=0)
    for key in spec.obs_keys:
        value = obs[key.name] if spec.dict_obs else obs
        assert value.shape == key.shape and value.dtype == key.dtype


# ---- one sentence for each bad input ----

def one_sentence(cfg=None, make=None) -> str:
    with pytest.raises(ConfigError) as error:
        make() if make else make_env(cfg)
    message = str(error.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def test_an_unknown_id_names_the_closest_registered_ones():
    message = one_sentence(EnvConfig("gym", "CartPol-v1"))
    assert "'CartPol-v1'" in message and "CartPole-v1" in message
    assert "MinAtar/Breakout-v1" in one_sentence(EnvConfig("gym", "MinAtar/Breakot-v1"))


def test_an_entry_point_or_factory_that_does_not_import_is_named_with_its_error():
    message = one_sentence(EnvConfig("gym", entry_point="no_such_package.envs:Env"))
    assert "no_such_package.envs:Env" in message and "ModuleNotFoundError" in message
    message = one_sentence(EnvConfig("gym", make="envs_for_tests:make_nothing"))
    assert "envs_for_tests:make_nothing" in message and "has no make_nothing" in message
    assert "not a gymnasium.Env" in one_sentence(EnvConfig("gym", make="envs_for_tests:make_no_env"))
    assert "unexpected keyword" in one_sentence(EnvConfig("gym", entry_point="envs_for_tests:Counter",
                                                          kwargs={"stop": 3}))


def test_an_observation_space_that_cannot_be_taken_names_the_key_and_space():
    space = gym.spaces.Dict({"name": gym.spaces.Text(8), "speed": gym.spaces.Box(-1, 1, (1,), np.float32)})
    observe = lambda t: {"name": "walker", "speed": np.zeros(1, np.float32)}
    message = one_sentence(make=lambda: gym_env("Text", space, observe))
    assert "'name'" in message and "Text(" in message
    env = gym_env("Text", space, observe, mlp_keys="speed")  # dropped by routing, it is no problem
    assert list(env.reset(seed=0)[0]) == ["speed"]


def test_cnn_keys_that_match_no_key_list_the_keys_there_are():
    message = one_sentence(make=lambda: gym_env("Routing", DICT, lambda t: DICT_VALUE, cnn_keys="pixels"))
    assert "'pixels'" in message and "(grid, image, speed)" in message
    message = one_sentence(make=lambda: gym_env("Routing", DICT, lambda t: DICT_VALUE, cnn_keys="speed"))
    assert "'speed'" in message and "no image" in message


def test_unbounded_box_actions_are_refused():
    message = one_sentence(make=lambda: gym_env(
        "Unbounded", gym.spaces.Box(-1, 1, (1,), np.float32), lambda t: np.zeros(1, np.float32),
        env_kwargs={"action_space": gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)}))
    assert "unbounded" in message and "[-1, 1]" in message


@pytest.mark.parametrize("cfg, words", [
    (EnvConfig("gym"), ["env.task, env.entry_point and env.make are empty", "exactly one"]),
    (EnvConfig("gym", "CartPole-v1", make="envs_for_tests:make_counter"), ["env.task and env.make are set"]),
    (EnvConfig("gym", entry_point="envs_for_tests.Counter"), ["pkg.module:Class"]),
    (EnvConfig("gym", "CartPole-v1", kwargs="{not json"), ["env.kwargs", "JSON"]),
    (EnvConfig("gym", "CartPole-v1", cnn_keys="(unclosed"), ["env.cnn_keys", "regular expression"]),
    (EnvConfig("atari", "pong", render_pixels=True), ["render_pixels", "gym"]),
    (EnvConfig("dmc", "walker-walk", observation="joints"), ["joints", "pixels, states, both"]),
    (EnvConfig("crafter", "diamonds"), ["diamonds", "reward or no_reward"]),
    (EnvConfig("dmc", entry_point="envs_for_tests:Counter"), ["entry_point", "gym suite"]),
])
def test_bad_gym_suite_config_fails_with_one_sentence(cfg, words):
    message = one_sentence(cfg)
    assert all(word in message for word in words), message

