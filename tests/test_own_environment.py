"""docs/your_own_environment.md stays true: each command it shows makes the environment whose start-up
summary the page quotes, and the model-free one trains on it."""

import re
import shlex

import pytest

from conftest import ROOT

PAGE = (ROOT / "docs" / "your_own_environment.md").read_text()
# Each ```bash command and the summary block that follows it.
EXAMPLES = re.findall(r"```bash\n(.*?)\n```.*?```\n(observation keys:.*?)\n```", PAGE, re.S)


def fit_arguments(command: str) -> list[str]:
    words = shlex.split(command.replace("\\\n", " "))
    assert words[:3] == ["python", "-m", "worldmodels.fit"]
    return words[3:]


def test_the_page_shows_two_commands_each_with_its_summary():
    assert len(EXAMPLES) == 2 and all("worldmodels.fit" in command for command, _ in EXAMPLES)


def environment_of(arguments: list[str]):
    """The environment a command trains on: its config's ``data.env`` with the ``--data.env.*`` flags over it."""
    import json

    import yaml

    from worldmodels.envs import EnvConfig, make_env

    config = yaml.safe_load((ROOT / arguments[arguments.index("--config") + 1]).read_text())
    fields = dict(config["data"]["env"])
    for flag, value in zip(arguments, arguments[1:]):
        if flag.startswith("--data.env."):
            name = flag.removeprefix("--data.env.")
            fields[name] = None if value == "null" else json.loads(value) if name == "kwargs" else yaml.safe_load(value)
    cfg = EnvConfig(**fields)
    return make_env(cfg, seed=0), cfg.resolved()


@pytest.mark.parametrize("example", [0, 1], ids=["dreamer", "drq_eps"])
def test_each_command_of_the_page_makes_the_environment_whose_summary_it_quotes(example, monkeypatch):
    from worldmodels.fit import start_summary
    from worldmodels.training.spec import EnvSpec

    monkeypatch.syspath_prepend(str(ROOT))  # the page's entry point, docs.examples.corridor, from the root
    command, summary = EXAMPLES[example]
    env, cfg = environment_of(fit_arguments(command))
    assert start_summary(EnvSpec.from_spaces(env.observation_space, env.action_space, cfg.frame_stack,
                                             cfg.action_repeat)) == summary


def test_the_model_free_command_of_the_page_trains_and_prints_its_summary(fit, tmp_path):
    """The whole path of the DrQ(eps) command, as configs/smoke.yaml runs a config's (the DreamerV3 one is the
    same loop with another agent; its summary is checked above)."""
    command, summary = EXAMPLES[1]
    done = fit(*fit_arguments(command), "--config", "configs/smoke.yaml", "--run_dir", str(tmp_path / "run"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert summary in done.stdout, done.stdout[-2000:]
    assert (tmp_path / "run" / "eval-final.json").is_file()
