"""The config table of docs/configs.md against the configs it names: each config exists, and each value a
row states (agent class, task, budget, size, train ratio, n-step, batch, epsilons, action repeat) is the
config's, with the class defaults where the config leaves a value out. The two cannot drift apart."""

import importlib
import inspect
import re

import pytest
import yaml

from conftest import ROOT

OVERLAYS = ("configs/dreamer_2024.yaml", "configs/smoke.yaml")  # merged after another config: no agent of their own


def config_rows() -> dict[str, list[str]]:
    text = (ROOT / "docs" / "configs.md").read_text()
    table = text[text.index("# Configs"):text.index("## Environment presets")]
    rows = {}
    for line in table.splitlines():
        match = re.match(r"\| `(configs/[\w.]+\.yaml)` \|(.*)\|$", line)
        if match:
            rows[match[1]] = [cell.strip() for cell in match[2].split("|")]
    return rows


ROWS = config_rows()


def settings(config: str) -> tuple[dict, dict, dict]:
    """(model init args with the class defaults filled in, data section, the config) of a shipped config."""
    loaded = yaml.safe_load((ROOT / config).read_text())
    module, name = loaded["model"]["class_path"].rsplit(".", 1)
    cls = getattr(importlib.import_module(module), name)
    defaults = {k: p.default for k, p in inspect.signature(cls.__init__).parameters.items()
                if p.default is not inspect.Parameter.empty}
    return {**defaults, **(loaded["model"].get("init_args") or {})}, loaded["data"], loaded


def test_the_table_names_every_shipped_config_and_nothing_else():
    shipped = {f"configs/{p.name}" for p in (ROOT / "configs").glob("*.yaml")} - {"configs/dqn_50m.yaml"}
    assert set(ROWS) == shipped  # dqn_50m is named inside the DQN row, as its overlay


@pytest.mark.parametrize("config", sorted(set(ROWS) - set(OVERLAYS)))
def test_each_value_the_config_table_states_is_the_configs(config):
    agent, environment, budget = ROWS[config]
    model, data, loaded = settings(config)
    class_paths = re.findall(r"`((?:model_free|worldmodels)\.[\w.]+)`", agent)
    if class_paths:
        assert class_paths[0] == loaded["model"]["class_path"]
    if environment.startswith("as "):  # "as NDDQN", "as DrQ-v2": the environment of the row it names
        environment = next(row[1] for row in ROWS.values() if row[0].startswith(environment[3:]))
    assert data["env"]["task"].lower() in environment.lower().replace(" ", "-")
    if budget.startswith("as "):
        budget = next(row[2] for row in ROWS.values() if row[0].startswith(budget[3:]))
    if (offline := re.match(r"([\d.]+)M updates \(offline\)", budget)):
        assert data["max_updates"] == float(offline[1]) * 1e6
    else:
        assert data["total_env_steps"] == float(re.match(r"([\d.]+)k env steps", budget)[1]) * 1000
    for pattern, key in [(r"size (\w+)", "size"), (r"train ratio (\d+)", "train_ratio"), (r"n-step (\d+)", "n_step"),
                         (r"batch (\d+)", "batch_size")]:
        for stated in re.findall(pattern, agent):
            assert str(model[key]) == stated, key
    if (eps := re.search(r"epsilon ([\d.]+) / ([\d.]+)", agent)):
        assert (model["epsilon_train"], model["epsilon_eval"]) == (float(eps[1]), float(eps[2]))
    if (repeat := re.search(r"action repeat (\d+)", environment)):
        stated = data["env"].get("action_repeat")
        if stated is None:
            from worldmodels.envs import EnvConfig

            stated = EnvConfig(**data["env"]).resolved().action_repeat
        assert stated == int(repeat[1])
