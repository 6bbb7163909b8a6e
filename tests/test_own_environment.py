"""docs/your_own_environment.md stays true: each command it shows trains on the example environment,
and prints the start-up summary the page quotes."""

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


@pytest.mark.parametrize("example", [pytest.param(0, marks=pytest.mark.integration), 1], ids=["dreamer", "drq_eps"])
def test_each_command_of_the_page_runs_and_prints_the_summary_it_quotes(fit, tmp_path, example):
    command, summary = EXAMPLES[example]
    # A few updates of each (the DreamerV3 one at size XS), as configs/smoke.yaml runs a config's whole path.
    smaller = ["--model.init_args.size", "XS", "--data.max_updates", "2"] if "dreamer" in command else []
    done = fit(*fit_arguments(command), "--config", "configs/smoke.yaml", *smaller, "--run_dir", str(tmp_path / "run"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert summary in done.stdout, done.stdout[-2000:]
    assert (tmp_path / "run" / "eval-final.json").is_file()
