"""The option schema of every registered attack: one table, free of TensorFlow.

    options.check("pgd", {"steps": 10, "loss": "margin"})   # {'steps': 10, 'loss': 'margin'}
    options.check("pgd", {"steps": 0})   # ValueError: Expected steps to be an integer >= 1. ...
    options.parse("pgd(steps=10, loss=margin)")             # ('pgd', {'steps': 10, 'loss':
    'margin'})

`Attack` (tfadv.attacks.spec), the attack CLI (one flag per option), the evaluation CLI (its
suite's specs) and the training config (its training attack) all check against `SCHEMA`, so a
mistake fails in one line before TensorFlow loads. Budgets and step sizes are in pixel scale
(images in [0, 1]). Values that are not plain numbers or strings (arrays, tensors, callables)
are left to the attack itself.
"""

import ast
import dataclasses
import math
import numbers
import re
import types

from tfadv.runtime import choices

# kinds beyond int, float, bool and str: checked against runtime.choices
NORM, LOSS, TARGET, JIT = "norm", "loss", "target", "jit"


@dataclasses.dataclass(frozen=True)
class Option:
    """One keyword option of an attack.

    name: the keyword; type: int, float, bool, str or a kind ("norm", "loss", "target", "jit");
    default: the attack's default (None: the attack derives it); low, high: the range of a
    number (high None: unbounded; low_open: low excluded; high_open: high excluded);
    choices: the allowed strings; help: one line for the CLI; flag: the attack CLI's flag when
    not `name` ("" : the name; None: no flag).
    """

    name: str
    type: object
    default: object = None
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple = ()
    help: str = ""
    flag: str | None = ""

    @property
    def flag_name(self) -> str | None:
        return self.name if self.flag == "" else self.flag

    def range_text(self) -> str:
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
        return f"in {left}{self.low:g}, {self.high:g}{right}"

    def check(self, value):
        """`value` checked (plain numbers and strings; others are left to the attack); returns
        the canonical value."""
        if value is None or not isinstance(value, (str, numbers.Number)):
            return value
        check = _CHECKS.get(self.type, _check_choice)
        return check(self, value)


def _fail(option, what, value):
    name = option.name
    raise ValueError(f"Expected {name} to be {what}. Received: {name}={value!r}")


def _check_int(option, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        _fail(option, f"an integer {option.range_text()}", value)
    if not _in_range(option, value):
        _fail(option, f"an integer {option.range_text()}", value)
    return int(value)


def _check_float(option, value):
    if isinstance(value, (bool, str)) or not math.isfinite(value) or not _in_range(option, value):
        _fail(option, f"a finite number {option.range_text()}", value)
    return value


def _in_range(option, value) -> bool:
    low, high = option.low, option.high
    above = low is None or (value > low if option.low_open else value >= low)
    below = high is None or (value < high if option.high_open else value <= high)
    return above and below


def _check_bool(option, value):
    if not isinstance(value, bool):
        _fail(option, "True or False", value)
    return value


def _check_choice(option, value):
    if option.choices and value not in option.choices:
        _fail(option, f"one of {option.choices}", value)
    return value


def _check_norm(option, value):
    if choices.norm_name(value) not in option.choices:
        _fail(option, f"one of {option.choices}", value)
    return value


def _check_loss(option, value):
    if not isinstance(value, str) or choices.LOSS_ALIASES.get(value, value) not in choices.LOSSES:
        _fail(option, f"one of {choices.LOSSES} or a callable", value)
    return value


def _check_target(option, value):
    if isinstance(value, str):
        return _check_choice(option, value)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        _fail(option, f"None, one of {choices.TARGETS} or a class id >= 0", value)
    return int(value)


def _check_jit(option, value):
    if not isinstance(value, bool) and str(value).lower() not in choices.JIT_CHOICES:
        _fail(option, f"one of {choices.JIT_CHOICES} or a bool", value)
    return value


_CHECKS = {
    int: _check_int,
    float: _check_float,
    bool: _check_bool,
    NORM: _check_norm,
    LOSS: _check_loss,
    TARGET: _check_target,
    JIT: _check_jit,
}


@dataclasses.dataclass(frozen=True)
class AttackSchema:
    """What one registered attack takes: its options (by name), whether it needs eps, and its
    family ("gradient", "score", "decision", "minimum_norm" or "patch")."""

    name: str
    options: types.MappingProxyType
    needs_eps: bool = True
    family: str = "gradient"
    training: bool = False  # runs inside a training step (compiled, fixed cost)

    def check(self, given: dict) -> dict:
        """`given` options checked; returns them canonical. An option the attack does not take
        is a ValueError naming it."""
        unknown = sorted(set(given) - set(self.options))
        if unknown:
            raise ValueError(
                f"Attack {self.name!r} takes no option(s) {unknown}; it takes "
                f"{sorted(self.options)}. Received: "
                f"{', '.join(f'{k}={given[k]!r}' for k in unknown)}"
            )
        return {k: self.options[k].check(v) for k, v in given.items()}

    def defaults(self) -> dict:
        return {name: option.default for name, option in self.options.items()}


# --- the options shared by many attacks (each attack's own defaults given where it is listed)


def _steps(default, what="iterations"):
    return Option("steps", int, default, low=1, help=what)


def _norm(default="inf", allowed=choices.NORMS):
    return Option("norm", NORM, default, choices=allowed, help=f"norm of the budget: {allowed}")


def _loss(default="ce"):
    return Option("loss", LOSS, default, help=f"loss to raise: {', '.join(choices.LOSSES)}")


_LOSS_ON = Option(
    "loss_on", str, "logits", choices=choices.LOSS_ON, help="scores the loss is taken on"
)
_TARGET = Option(
    "target",
    TARGET,
    None,
    choices=choices.TARGETS,
    help=f"targeted: {', '.join(choices.TARGETS)} or a class id",
)
_ALPHA = Option("alpha", float, None, low=0, help="step size in pixel scale (None: from eps)")
_SEED = Option("seed", int, None, low=0, help="seed of the random draws", flag=None)
_JIT = Option("jit_compile", JIT, "auto", help="XLA: auto (on only with a GPU), true or false")
_RESTARTS = Option("restarts", int, 1, low=1, help="random restarts, best kept per image")
_RHO = Option(
    "rho", float, 0.75, low=0, high=1, low_open=True, high_open=True, help="APGD checkpoint rho"
)
_N_TARGETS = Option(
    "n_targets", int, 9, low=1, help="target classes per image, the most likely first"
)
_GRADIENT = (_TARGET, _SEED, _JIT)


def _attack(name, *opts, needs_eps=True, family="gradient", training=False) -> AttackSchema:
    table = types.MappingProxyType({option.name: option for option in opts})
    return AttackSchema(name, table, needs_eps, family, training)


def _fgsm(name, target=None):
    target_option = dataclasses.replace(_TARGET, default=target)
    return _attack(
        name, _loss(), _LOSS_ON, _norm(), target_option, _SEED, _JIT, training=name == "fgsm"
    )


def _apgd(name, loss="ce"):
    return _attack(name, _steps(100), _RESTARTS, _RHO, _loss(loss), _LOSS_ON, _norm(), *_GRADIENT)


SCHEMA = types.MappingProxyType(
    {
        schema.name: schema
        for schema in (
            _fgsm("fgsm"),
            _fgsm("fgsm_targeted", target="least_likely"),
            _attack("fgsm_random", _ALPHA, _loss(), _LOSS_ON, _SEED, _JIT, training=True),
            _attack(
                "bim", _steps(10), _ALPHA, _loss(), _LOSS_ON, _norm(), *_GRADIENT, training=True
            ),
            _attack(
                "pgd",
                _steps(10),
                _ALPHA,
                _RESTARTS,
                Option("random_start", bool, True, help="start inside the eps-ball at random"),
                Option("early_stop", bool, False, help="stop an image once it is misclassified"),
                _loss(),
                _LOSS_ON,
                _norm(),
                *_GRADIENT,
                training=True,
            ),
            _attack("random_sign", _SEED, _JIT, training=True),
            _apgd("apgd"),
            _apgd("apgd_dlr", loss="dlr"),
            _attack(
                "apgd_t",
                _steps(100),
                _N_TARGETS,
                _RHO,
                _loss("dlr"),
                _LOSS_ON,
                _norm(),
                _SEED,
                _JIT,
            ),
            _attack(
                "fab_t",
                _steps(100),
                _N_TARGETS,
                _RESTARTS,
                Option("alpha_max", float, 0.1, low=0, high=1, help="FAB's largest bias step"),
                Option("beta", float, 0.9, low=0, high=1, low_open=True, help="FAB's backstep"),
                Option("eta", float, 1.05, low=0, low_open=True, help="FAB's extrapolation"),
                _norm(),
                _SEED,
                _JIT,
            ),
            _attack(
                "square",
                Option("queries", int, 5000, low=1, help="model queries per image, clean one too"),
                Option("p_init", float, 0.8, low=0, high=1, low_open=True, help="initial square"),
                Option("rescale_schedule", bool, False, help="p schedule fit to the queries"),
                _loss("margin"),
                _norm(),
                *_GRADIENT,
                family="score",
            ),
            _attack(
                "one_pixel",
                Option("pixels", int, 1, low=1, help="pixels changed"),
                Option("population", int, 100, low=1, help="candidates per image"),
                Option("max_queries", int, 10000, low=1, help="model queries per image"),
                Option("chunk_queries", int, 4096, low=1, help="queries per model call"),
                Option("mutation", float, 0.5, low=0, help="differential evolution's F"),
                *_GRADIENT,
                needs_eps=False,
                family="score",
            ),
            _attack(
                "patch",
                Option("size", int, 8, low=1, help="patch side in pixels", flag="patch_size"),
                _steps(200),
                Option("step_size", float, 2 / 255, low=0, help="patch value change per step"),
                Option("batch_size", int, 64, low=1, help="images per patch update", flag=None),
                Option("positions", str, "random", choices=("random",), help="patch positions"),
                _loss(),
                _LOSS_ON,
                *_GRADIENT,
                needs_eps=False,
                family="patch",
            ),
            _attack(
                "hop_skip_jump",
                _steps(40),
                Option("max_queries", int, 5000, low=1, help="model queries per image"),
                Option("init_evals", int, 100, low=1, help="first gradient-estimate probes"),
                Option("max_evals", int, 1000, low=1, help="most gradient-estimate probes"),
                Option("init_trials", int, 100, low=1, help="random draws for a start"),
                Option("max_halvings", int, 20, low=1, help="step-size halvings per step"),
                _norm("2"),
                _SEED,
                _JIT,
                needs_eps=False,
                family="decision",
            ),
            _attack(
                "deepfool",
                _steps(50),
                Option("candidates", int, 10, low=1, help="classes considered, most likely first"),
                Option("overshoot", float, 0.02, low=0, help="DeepFool's overshoot"),
                _norm("2", ("2", "inf")),
                needs_eps=False,
                family="minimum_norm",
            ),
            _attack(
                "cw_l2",
                _steps(100),
                Option("binary_search_steps", int, 9, low=1, help="searches over the constant"),
                Option("stepsize", float, 0.01, low=0, low_open=True, help="Adam step size"),
                Option("confidence", float, 0.0, low=0, help="CW's kappa"),
                Option("initial_const", float, 1e-3, low=0, low_open=True, help="first constant"),
                Option("abort_early", bool, True, help="stop a search that stalls"),
                needs_eps=False,
                family="minimum_norm",
            ),
            _attack(
                "fmn",
                _steps(100),
                _norm("2", ("inf", "2", "1")),
                Option("max_stepsize", float, 1.0, low=0, low_open=True, help="first step length"),
                Option("min_stepsize", float, None, low=0, low_open=True, help="last step length"),
                Option("gamma", float, 0.05, low=0, low_open=True, help="FMN's norm step"),
                needs_eps=False,
                family="minimum_norm",
            ),
        )
    }
)

TRAINING_ATTACKS = tuple(name for name, schema in SCHEMA.items() if schema.training)
MINIMUM_NORM_ATTACKS = tuple(n for n, s in SCHEMA.items() if s.family == "minimum_norm")
EPS_FREE_ATTACKS = tuple(name for name, schema in SCHEMA.items() if not schema.needs_eps)


ANY_OPTION = types.MappingProxyType(
    {
        **{n: o for s in reversed(SCHEMA.values()) for n, o in s.options.items()},
        "norm": _norm(None, ("inf", "2", "1")),
    }
)
"""An option of any attack by name (for attack functions outside the registry)."""


def names() -> tuple:
    return tuple(sorted(SCHEMA))


def schema(name: str) -> AttackSchema:
    """The schema of registered attack `name`."""
    if name not in SCHEMA:
        raise ValueError(
            f"Unknown attack {name!r}. Expected one of {list(names())}. Received: attack={name!r}"
        )
    return SCHEMA[name]


def check(name: str, given: dict) -> dict:
    """`given` options of attack `name` checked; returns them canonical (see AttackSchema.check)."""
    return schema(name).check(given)


def by_flag() -> dict:
    """{flag: [Option, ...]}: each CLI flag of an attack option, with that option in every attack
    that takes it (same name, same type)."""
    out = {}
    for attack in SCHEMA.values():
        for option in attack.options.values():
            if option.flag_name is not None:
                out.setdefault(option.flag_name, []).append((attack.name, option))
    return out


# --- attack specs as text: 'pgd', 'pgd(steps=10, loss=margin)', 'pgd:steps=10,loss=margin'


def parse(text: str) -> tuple:
    """(name, options) of a spec; values are Python literals (10, 0.5, True, None), simple
    fractions (2/255) or bare words. Options are not checked (see `check`)."""
    match = re.fullmatch(r"\s*([A-Za-z_][\w]*)\s*(?:\((.*)\)|:(.*))?\s*", text or "")
    if not match:
        raise ValueError(
            f"Expected an attack such as 'pgd' or 'pgd(steps=10, loss=margin)'. Received: {text!r}"
        )
    body = match.group(2) if match.group(2) is not None else match.group(3)
    given = {}
    for part in filter(None, (p.strip() for p in (body or "").split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key.strip().isidentifier():
            raise ValueError(f"Expected option=value in {text!r}. Received: {part!r}")
        given[key.strip()] = literal(value.strip())
    return match.group(1), given


def literal(text: str):
    """A spec's value: a fraction (2/255), a Python literal, True/False/None, else the text."""
    fraction = re.fullmatch(r"([0-9.]+)\s*/\s*([0-9.]+)", text)
    if fraction:
        return float(fraction.group(1)) / float(fraction.group(2))
    lowered = {"true": True, "false": False, "none": None}.get(text.lower(), text)
    if lowered is not text:
        return lowered
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def split_specs(text: str) -> list:
    """'a(x=1, y=2),b' -> ['a(x=1, y=2)', 'b'] (commas inside parentheses kept)."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return [p.strip() for p in [*parts, current] if p.strip()]


def check_suite(text: str) -> list:
    """The (name, options) of each spec of a comma list naming a registered attack, its options
    checked; other words (named suites such as "standard") are left to the evaluation."""
    out = []
    for spec in split_specs(text or ""):
        name, given = parse(spec)
        if name in SCHEMA or given:
            out.append((name, check(name, given)))
    return out


def check_spec(text: str) -> tuple:
    """(name, options) of a spec of a registered attack, its options checked."""
    name, given = parse(text)
    return name, check(name, given)
