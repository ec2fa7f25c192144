"""The attack option schema (tfadv.attacks.options): one table that the registry, `Attack`, the
attack CLI, the evaluation CLI and the training config all check against."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT
from tfadv import attacks
from tfadv.attacks import options, spec
from tfadv.experiment.config import ATTACK_FIELDS, TrainConfig


def _python(code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )


def test_schema_imports_without_tensorflow():
    result = _python(
        "import sys\n"
        "from tfadv.attacks import options\n"
        "from tfadv.experiment import config\n"
        "config.TrainConfig(attack='pgd(steps=3)').check_values()\n"
        "options.check_suite('pgd(steps=2),square(queries=10)')\n"
        "print(len(options.SCHEMA), 'tensorflow' in sys.modules)"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == [str(len(attacks.names())), "False"]


def test_schema_is_the_registry():
    """Every registered attack has a schema naming exactly its keyword options and defaults."""
    assert set(options.SCHEMA) == set(attacks.names())
    for name in attacks.names():
        info, schema = spec.lookup(name), options.SCHEMA[name]
        assert set(schema.options) == set(info.parameters), name
        assert schema.needs_eps == info.needs_eps, name
        for key, option in schema.options.items():
            assert info.option({}, key) == pytest.approx(option.default), (name, key)


def test_lists_derived_from_the_schema():
    assert options.TRAINING_ATTACKS == ("fgsm", "fgsm_random", "bim", "pgd", "random_sign")
    assert options.MINIMUM_NORM_ATTACKS == ("deepfool", "cw_l2", "fmn")
    assert all(options.SCHEMA[n].needs_eps for n in options.TRAINING_ATTACKS)
    assert not any(options.SCHEMA[n].needs_eps for n in options.MINIMUM_NORM_ATTACKS)
    assert {"one_pixel", "patch", "hop_skip_jump"} <= set(options.EPS_FREE_ATTACKS)


def _bad_values(option):
    """Values outside the option's range or choices (none for free strings and callables)."""
    if option.type is int:
        return [option.low - 1, 2.5, True]
    if option.type is float:
        bad = [float("nan"), "x"]
        if option.low is not None:
            bad.append(option.low - 1 if not option.low_open else option.low)
        if option.high is not None:
            bad.append(option.high + 1)
        return bad
    if option.type is bool:
        return [1, "yes"]
    if option.type in (options.NORM, options.LOSS, options.TARGET, options.JIT) or option.choices:
        return ["nonsense"]
    return []


@pytest.mark.parametrize("name", sorted(options.SCHEMA))
def test_every_option_of_every_attack_is_validated(name):
    schema = options.SCHEMA[name]
    for key, option in schema.options.items():
        good = [option.default, *option.choices] if option.default is not None else []
        for value in good:
            made = attacks.Attack(name, **{key: value})  # the schema and the attack agree
            assert key in made.options
        for value in _bad_values(option):
            with pytest.raises(ValueError) as raised:
                attacks.Attack(name, **{key: value})
            message = str(raised.value)
            assert "\n" not in message and f"Received: {key}=" in message, (name, key, message)
            assert message.startswith("Expected "), message
            with pytest.raises(ValueError):
                options.check(name, {key: value})  # the same, without TensorFlow


def test_a_bad_option_is_one_line_naming_it():
    with pytest.raises(ValueError) as raised:
        attacks.Attack("pgd", stepz=3)
    assert "\n" not in str(raised.value) and "stepz" in str(raised.value)
    with pytest.raises(ValueError, match=r"Received: stepz=3$"):
        options.check("pgd", {"stepz": 3})
    with pytest.raises(ValueError, match="Unknown attack 'jsma'"):
        options.check_spec("jsma(steps=2)")
    assert options.check_spec("pgd(steps=3, loss=margin)") == (
        "pgd",
        {"steps": 3, "loss": "margin"},
    )


def test_one_type_per_option_name():
    for flag, entries in options.by_flag().items():
        kinds = {(option.name, option.type) for _, option in entries}
        assert len(kinds) == 1, (flag, kinds)


def test_attack_cli_flags_are_the_schema_options():
    from tfadv import attack as attack_cli

    expected = {
        o.name for s in options.SCHEMA.values() for o in s.options.values() if o.flag is not None
    }
    assert set(attack_cli.OPTION_FLAGS.values()) == expected
    assert attack_cli.OPTION_FLAGS["patch_size"] == "size"
    assert not set(attack_cli.OPTION_FLAGS) & set(attack_cli.JOB_FLAGS)
    argv = ["attack", "--model=m", "--attack=patch", "--patch_size=5", "--steps=3", "--target=2"]
    attack_cli.FLAGS(argv)
    try:
        job = attack_cli.job_from_flags()
    finally:
        attack_cli.FLAGS.unparse_flags()
    assert job.options == {"size": 5, "steps": 3, "target": 2}


def test_attack_job_checks_against_the_schema(tmp_path):
    from tfadv.experiment import attack_job

    model = tmp_path / "m.keras"
    model.write_text("")
    for job, message in (
        (attack_job.AttackJob(model=str(model), attack="square", eps=0.1), None),
        (
            attack_job.AttackJob(
                model=str(model), attack="square", eps=0.1, options={"n_targets": 2}
            ),
            "takes no option(s) ['n_targets']",
        ),
        (
            attack_job.AttackJob(model=str(model), attack="apgd_t(n_targets=0)", eps=0.1),
            "Received: n_targets=0",
        ),
        (attack_job.AttackJob(model=str(model), attack="pgd"), "Received: eps=None"),
    ):
        if message is None:
            attack_job.check_options(job)
            continue
        with pytest.raises(ValueError) as raised:
            attack_job.check_options(job)
        assert message in str(raised.value)


def test_config_accepts_exactly_the_schema_options():
    training = [options.SCHEMA[n] for n in options.TRAINING_ATTACKS]
    for field, option in ATTACK_FIELDS.items():
        assert any(option in s.options for s in training), field
    TrainConfig(attack="pgd(steps=3, norm=2)", attack_steps=3).check_values()
    for fields, fragment in (
        (dict(attack="square"), "Received: attack='square'"),
        (dict(attack="pgd(stepz=3)"), "stepz"),
        (dict(attack="pgd(norm=3)"), "Received: norm=3"),
        (dict(attack_steps=0), "Received: attack_steps=0"),
        (dict(attack_loss_on="softmax"), "Received: attack_loss_on='softmax'"),
        (dict(monitor_attack="pgd(restarts=0)"), "Received: restarts=0"),
        (dict(jit_compile="maybe"), "Received: jit_compile='maybe'"),
        (dict(test_noise="salt"), "Received: test_noise='salt'"),
    ):
        with pytest.raises(ValueError) as raised:
            TrainConfig(**fields).check_values()
        assert fragment in str(raised.value) and "\n" not in str(raised.value), fields


def test_evaluation_suite_checked_against_the_schema():
    assert options.check_suite("standard") == []
    assert options.check_suite("pgd(steps=50, loss=margin),square") == [
        ("pgd", {"steps": 50, "loss": "margin"}),
        ("square", {}),
    ]
    with pytest.raises(ValueError, match="Received: queries=0"):
        options.check_suite("pgd,square(queries=0)")


def test_the_three_clis_import_together_and_parse():
    """Each CLI defines its flags on its own FlagValues: all three import in one process (without
    TensorFlow) and parse their own flags; absl's global flags stay empty."""
    result = _python(
        "import json, sys\n"
        "from absl import flags\n"
        "from tfadv import attack, evaluate, train\n"
        "train.FLAGS(['train', '--epochs=2', '--attack=pgd(steps=3)'])\n"
        "attack.FLAGS(['attack', '--model=m', '--eps=0.1', '--queries=9', '--attack=square'])\n"
        "evaluate.FLAGS(['evaluate', '--model=a', '--model=b', '--eps=0.03', '--suite=fast'])\n"
        "jobs = [train.job_from_flags(), attack.job_from_flags(), evaluate.job_from_flags()]\n"
        "print(json.dumps([jobs[0].epochs, jobs[1].options, jobs[2].models,\n"
        "                  'eps' in flags.FLAGS, 'tensorflow' in sys.modules]))"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout) == [2, {"queries": 9}, ["a", "b"], False, False]


def test_package_names_are_the_attacks_even_after_a_submodule_import():
    result = _python(
        "import tfadv.attacks.patch, tfadv.attacks.square\n"
        "from tfadv import attacks\n"
        "print(callable(attacks.patch), callable(attacks.square), attacks.LOSS_ON)"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[:2] == ["True", "True"]
