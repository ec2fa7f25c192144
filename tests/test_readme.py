"""The README's set-up commands are the ones CI runs, and its figures match the code."""

import os
import re

from conftest import REPO_ROOT
from tfadv import models


def _read(name):
    with open(os.path.join(REPO_ROOT, name)) as f:
        return f.read()


def test_ci_runs_exactly_the_readme_setup_commands():
    readme = _read("README.md")
    setup = readme.split("## Set-up", 1)[1]
    block = re.search(r"```bash\n(.*?)```", setup, re.S).group(1)
    commands = [line for line in block.splitlines() if line.strip()]
    assert len(commands) == 2
    ci_lines = [line.strip() for line in _read(".ci/run").splitlines()]
    for command in commands:
        assert command in ci_lines


def test_readme_parameter_counts_match_models():
    readme = _read("README.md")
    for name in ("baseline_cnn", "vgg_small", "tiny_cnn"):
        row = next(line for line in readme.splitlines() if line.startswith(f"| `{name}` |"))
        documented = int(re.search(r"\d[\d,]+", row.split("|")[3]).group(0).replace(",", ""))
        assert documented == models.count_parameters(models.build(name)), name


def test_every_flagfile_named_in_readme_exists():
    for name in set(re.findall(r"configs/([a-z0-9_]+\.flags)", _read("README.md"))):
        assert os.path.exists(os.path.join(REPO_ROOT, "configs", name)), name


def test_every_config_is_named_after_its_recipe():
    from tfadv.experiment import recipes

    folder = os.path.join(REPO_ROOT, "configs")
    for name in sorted(os.listdir(folder)):
        recipe = re.search(r"^--recipe=(\w+)", _read(os.path.join("configs", name)), re.M).group(1)
        assert recipe in recipes.names(), name
        assert name == f"{recipe}.flags" or name.startswith(f"{recipe}_"), (name, recipe)
