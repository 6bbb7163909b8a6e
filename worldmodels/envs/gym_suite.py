"""Any Gymnasium environment: a registered id (``env.task``), a class (``env.entry_point``,
``pkg.module:Class``) or a factory function (``env.make``, ``pkg.module:function``), called with
``env.kwargs``; with ``env.render_pixels`` made with ``render_mode="rgb_array"`` and its frames added as the
key ``pixels``. Then the shared wrappers (``worldmodels.envs.finish``): its observations become the agents'
keys (``worldmodels.envs.keys``), its bounded Box actions [-1, 1].

Gymnasium 1.x loads no plugins: a namespace's ids exist once its package has registered them. The
namespaces below are registered on first use; any other package's ids are reached with gymnasium's
``module:Id`` form (``env.task: my_package:MyEnv-v0`` imports ``my_package`` first).

MinAtar (``MinAtar/Breakout-v1``: minatar 1.0.15's ``minatar.gym.register_envs`` registers ``-v0``, all 18
actions, and ``-v1``, each game's minimal action set) observes a 10x10xC bool grid: by default a float32
vector of 100*C 0s and 1s; with ``env.cnn_keys: obs`` an image (C, 10, 10) of 0 and 255
(``worldmodels.envs.keys``).
"""

from __future__ import annotations

import difflib
import importlib
from functools import reduce
from typing import Any, Callable

import gymnasium as gym

from worldmodels.envs.config import EnvConfig
from worldmodels.envs.finish import finish
from worldmodels.envs.keys import AddPixels, one_line
from worldmodels.errors import ConfigError


def register_ale() -> None:
    import ale_py

    gym.register_envs(ale_py)


def register_minatar() -> None:
    from minatar.gym import register_envs

    register_envs()


NAMESPACES: dict[str, Callable[[], None]] = {"ALE": register_ale, "MinAtar": register_minatar}


def registered(task: str) -> str:
    """The id of ``task`` once registered: its ``module:`` imported, its namespace's package registered;
    an unknown id is a sentence naming the closest registered ones."""
    module, _, env_id = task.rpartition(":")
    if module:
        import_module("task", task, module)
    namespace = env_id.split("/")[0] if "/" in env_id else None
    if namespace in NAMESPACES and not any(known.startswith(namespace + "/") for known in gym.registry):
        NAMESPACES[namespace]()
    if env_id not in gym.registry:
        close = difflib.get_close_matches(env_id, list(gym.registry), n=3, cutoff=0.6)
        hint = f"the closest registered ones are {', '.join(close)}" if close else "gymnasium.pprint_registry() lists them"
        raise ConfigError(f"env.task '{task}' is not a registered Gymnasium id ({hint}); for an id that another package "
                          "registers write 'package:Id', or name a class with env.entry_point.")
    return env_id


def import_module(field: str, value: str, module: str):
    try:
        return importlib.import_module(module)
    except Exception as error:  # ImportError, or whatever the module raises while it is imported
        raise ConfigError(f"env.{field} '{value}' does not import: module {module} raised {type(error).__name__} "
                          f"({one_line(error)}); check the module path and that its package is installed.") from None


def loaded(field: str, value: str) -> Callable[..., Any]:
    """The class or function that ``pkg.module:name`` names (``name`` may be dotted: ``Outer.Inner``)."""
    module_name, _, attribute = value.partition(":")
    module = import_module(field, value, module_name)
    try:
        return reduce(getattr, attribute.split("."), module)
    except AttributeError:
        raise ConfigError(f"env.{field} '{value}' does not import: module {module_name} has no {attribute}.") from None


def made(field: str, value: str, target: Callable[..., Any], kwargs: dict[str, Any]) -> gym.Env:
    """``target(**kwargs)``, which must be a gymnasium Env."""
    try:
        env = target(**kwargs)
    except TypeError as error:  # the usual config mistake: an argument it does not take
        raise ConfigError(f"env.{field} '{value}' could not be called with the arguments {kwargs} "
                          f"({one_line(error)}); fix env.kwargs.") from None
    if not isinstance(env, gym.Env):
        raise ConfigError(f"env.{field} '{value}' returned a {type(env).__name__}, not a gymnasium.Env; return a "
                          "gymnasium environment (an old gym one needs shimmy's or your own adapter).")
    return env


def base_env(cfg: EnvConfig) -> gym.Env:
    """The environment that ``cfg`` names, before any wrapper of ours."""
    kwargs = dict(cfg.kwargs or {})
    if cfg.render_pixels:
        kwargs["render_mode"] = "rgb_array"
    if cfg.task is not None:
        env_id = registered(cfg.task)
        try:
            return gym.make(env_id, **kwargs)
        except (gym.error.Error, TypeError) as error:  # a missing dependency, an argument it does not take
            raise ConfigError(f"gym.make('{env_id}') failed with env.kwargs {kwargs} ({one_line(error)}); install "
                              "what it names or fix env.kwargs.") from None
    field, value = ("entry_point", cfg.entry_point) if cfg.entry_point is not None else ("make", cfg.make)
    return made(field, value, loaded(field, value), kwargs)


def make_gym(cfg: EnvConfig, seed: int) -> gym.Env:
    env = base_env(cfg)
    if cfg.render_pixels:
        env = AddPixels(env)
    return finish(env, cfg, seed)
