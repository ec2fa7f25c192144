"""The README's set-up commands are the ones CI runs, its figures and names match the code, and its
Python examples run."""

import concurrent.futures
import os
import platform
import re
import subprocess
import sys
import time

import pytest

from conftest import MINI_ARCHIVE, REPO_ROOT, tiny_config
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


# --- the README runs as written ------------------------------------------------------------------

QUICKSTART = "saved_models/standard_quickstart"
PACKAGES = (
    "attacks",
    "defenses",
    "evaluation",
    "explain",
    "layers",
    "models",
    "data",
    "experiment",
    "runtime",
)
MINI_PATH = re.compile(r"\.\./shared/data/[\w.-]+")


def python_blocks(readme):
    """The fenced ```python blocks of the README, in order."""
    return re.findall(r"^```python\n(.*?)^```", readme, re.S | re.M)


def run_python(code, cwd, timeout=300, unset=()):
    env = dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="2", MPLBACKEND="Agg")
    for name in unset:
        env.pop(name, None)
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def quickstart_run(tmp_path_factory):
    """A tiny stand-in for saved_models/standard_quickstart: tiny_cnn, 2 epochs on 400 synthetic
    images, 32 test images (so the README's `limit=256` costs little here)."""
    from tfadv.experiment.run import run_training

    output = tmp_path_factory.mktemp("runs") / "standard_quickstart"
    run_training(tiny_config(output, epochs=2, train_limit=400, test_limit=32))
    return str(output)


def test_import_tfadv_loads_no_tensorflow_and_gives_every_subpackage():
    code = f"""
import os, sys
import tfadv
assert "tensorflow" not in sys.modules and "keras" not in sys.modules, (
    "import tfadv loaded TensorFlow"
)
onednn = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
load = tfadv.models.load
assert "tensorflow" in sys.modules and os.environ.get("TF_ENABLE_ONEDNN_OPTS") == onednn
for name in {PACKAGES!r}:
    assert getattr(tfadv, name).__name__ == "tfadv." + name, name
    assert name in dir(tfadv), name
try:
    tfadv.no_such_thing
except AttributeError as e:
    assert "no_such_thing" in str(e)
else:
    raise AssertionError("tfadv.no_such_thing resolved")
print(load.__module__, onednn)
"""
    result = run_python(code, REPO_ROOT, unset=["TF_ENABLE_ONEDNN_OPTS"])
    assert result.returncode == 0, result.stderr[-2000:]
    module, onednn = result.stdout.split()
    assert module == "tfadv.models.saving"
    if platform.machine().lower() in ("x86_64", "amd64"):
        assert onednn == "1"  # set by import tfadv, before TensorFlow loaded


def test_the_three_commands_import_together_and_build_their_jobs():
    from absl import flags

    from tfadv import attack, evaluate, train

    commands = {
        train: [
            "train",
            "--flagfile=configs/standard_quickstart.flags",
            "--epochs=2",
            "--model=tiny_cnn",
        ],
        attack: [
            "attack",
            "--model=run",
            "--attack=apgd_t",
            "--eps=0.03",
            "--n_targets=2",
            "--target=3",
        ],
        evaluate: [
            "evaluate",
            "--model=run",
            "--model=other:student_T1",
            "--eps=0.03",
            "--suite=fast",
        ],
    }
    jobs = {}
    cwd = os.getcwd()
    os.chdir(REPO_ROOT)  # the flagfile path is relative
    try:
        for module, argv in commands.items():
            module.FLAGS(argv)
            jobs[module] = module.job_from_flags()
    finally:
        os.chdir(cwd)
        for module in commands:
            module.FLAGS.unparse_flags()
    assert (jobs[train].epochs, jobs[train].model, jobs[train].dataset) == (
        2,
        "tiny_cnn",
        "synthetic",
    )
    assert (jobs[attack].attack, jobs[attack].eps) == ("apgd_t", 0.03)
    assert jobs[attack].options == {"n_targets": 2, "target": 3}
    assert jobs[evaluate].models == ["run", "other:student_T1"] and jobs[evaluate].suite == "fast"
    assert "eps" not in flags.FLAGS  # importing a command defines nothing on absl's global flags


def test_experiment_loaders_read_a_run_folder(quickstart_run):
    import numpy as np

    from tfadv import experiment

    model = experiment.load_model(quickstart_run)
    test = experiment.load_split(quickstart_run, limit=10)
    assert model.name and model.output_shape == (None, 10)
    assert test.images.shape == (10, 32, 32, 3) and test.float_images().max() <= 1.0
    assert (
        len(experiment.load_split(quickstart_run)) == 32
        and len(experiment.load_split(quickstart_run, "val")) == 40
    )
    np.testing.assert_array_equal(
        experiment.load_split(quickstart_run, limit=32).labels,
        experiment.load_split(quickstart_run).labels,
    )
    with pytest.raises(ValueError, match="the run has no model 'teacher'"):
        experiment.load_model(quickstart_run, "teacher")
    with pytest.raises(FileNotFoundError, match="run='nowhere'"):
        experiment.load_model("nowhere")
    with pytest.raises(ValueError, match=r"Received: limit=-1"):
        experiment.load_split(quickstart_run, limit=-1)
    with pytest.raises(ValueError, match="run='nowhere' is not a run folder"):
        experiment.load_split("nowhere")


def test_every_python_block_of_the_readme_runs(quickstart_run, tmp_path):
    """Each block in a fresh interpreter (two at a time), the README's paths replaced by a tiny run
    and the shared archive; blocks that read the archive are skipped when it is absent."""
    blocks = python_blocks(_read("README.md"))
    codes, skipped = {}, []
    for index, block in enumerate(blocks, 1):
        code = block.replace(QUICKSTART, quickstart_run)
        if MINI_PATH.search(code):
            if not os.path.exists(MINI_ARCHIVE):
                skipped.append(index)
                continue
            code = MINI_PATH.sub(MINI_ARCHIVE, code)
        codes[index] = code

    def run_block(index):
        cwd = tmp_path / f"block{index}"
        cwd.mkdir()
        started = time.perf_counter()
        return run_python(codes[index], cwd), round(time.perf_counter() - started, 1)

    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip(codes, pool.map(run_block, codes), strict=True))
    failures = [
        f"README python block {index} ({blocks[index - 1].strip().splitlines()[0]!r}):\n"
        f"{result.stderr[-2000:]}"
        for index, (result, _) in results.items()
        if result.returncode != 0
    ]
    assert not failures, "\n\n".join(failures)
    seconds = {index: duration for index, (_, duration) in results.items()}
    print(
        f"executed {len(results)} of {len(blocks)} README python "
        f"blocks (seconds each: {seconds}); skipped: {skipped}"
    )
    assert len(results) + len(skipped) == len(blocks) >= 7


# --- every name the README gives exists ---------------------------------------------------------


def prose(readme):
    """The README without its fenced blocks."""
    return re.sub(r"^\s*```.*?^\s*```", "", readme, flags=re.S | re.M)


def table_rows(readme, header):
    """The rows (lists of cells) of the Markdown table whose header row starts with `header`."""
    lines = readme.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def first_name(cell):
    """`name(...)` or `name` in a table cell -> name (None for prose such as 'any callable ...')."""
    match = re.fullmatch(r"`([A-Za-z_]\w*)(\(.*\))?`", cell)
    return match.group(1) if match else None


def resolve(package, name):
    import importlib

    module = importlib.import_module(f"tfadv.{package}")
    if hasattr(module, name):
        return getattr(module, name)
    return importlib.import_module(
        f"tfadv.{package}.{name}"
    )  # a submodule (ModuleNotFoundError if none)


def test_every_attack_in_the_table_is_a_function_or_a_registered_name():
    from tfadv import attacks

    rows = table_rows(_read("README.md"), "| attack | what it does |")
    names = [first_name(row[0]) for row in rows]
    assert len(names) >= 14 and None not in names
    for name, (_, text) in zip(names, rows, strict=True):
        assert hasattr(attacks, name) or name in attacks.names(), name
        if not hasattr(attacks, name):  # a registered name only: the row says of which function
            function = re.search(r"registered name of `(\w+)\(", text)
            assert function and callable(getattr(attacks, function.group(1), None)), (
                name,
                text[:80],
            )
            assert attacks.Attack(name).describe().startswith(name)


def test_every_layer_model_recipe_and_loss_in_the_tables_exists():
    from tfadv import attacks, layers
    from tfadv.experiment import recipes

    readme = _read("README.md")
    tables = {
        "| layer | what it does |": lambda name: isinstance(getattr(layers, name, None), type),
        "| name | architecture |": lambda name: name in models.REGISTRY,
        "| recipe | what it trains |": lambda name: name in recipes.names(),
        "| loss | untargeted |": lambda name: attacks.losses.get(name) is not None,
    }
    for header, exists in tables.items():
        names = [first_name(row[0]) for row in table_rows(readme, header)]
        assert len([n for n in names if n]) >= 3, header
        for name in filter(None, names):
            assert exists(name), (header, name)


def test_every_evaluation_piece_and_dotted_name_in_the_prose_exists():
    import tfadv

    text = prose(_read("README.md"))
    pieces = re.search(
        r"The smaller pieces are in `tfadv.evaluation` too: (.*?)\n\n", text, re.S
    ).group(1)
    names = re.findall(r"`(\w+)`", pieces)
    assert len(names) >= 10
    for name in names:
        assert hasattr(tfadv.evaluation, name), name
    dotted = set()
    for span in re.findall(r"`([^`\n]+)`", text):
        dotted.update(
            re.findall(rf"(?<![\w.])(?:tfadv\.)?({'|'.join(PACKAGES)})\.([A-Za-z_]\w*)", span)
        )
    assert len(dotted) >= 12
    for package, name in sorted(dotted):
        resolve(package, name)
