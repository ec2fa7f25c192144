"""An attack as one value: a registered name plus its options, built once and carried unchanged.

    attack = Attack("pgd", steps=10, loss="margin")     # or Attack.parse("pgd(steps=10,
    loss=margin)")
    x_adv = attack(model, images, labels, eps=8 / 255)
    attack.describe()                                    # 'pgd(loss=margin, steps=10)'

The same value drives adversarial training, the per-epoch callback, the robust monitor,
`run_attack`, the evaluation suite and the CLIs. Options are checked when the value is made
(an option the attack does not take, a bad norm, loss, loss_on or target is a ValueError), so
a mistake fails before any work starts. A plain function with the shared signature
`(model, images, labels, eps, **options)` can stand in for a registered name.
"""

import dataclasses
import importlib
import inspect
import types
from collections.abc import Callable

from tfadv.attacks import losses, norms, targets
from tfadv.attacks import options as options_schema


@dataclasses.dataclass(frozen=True)
class AttackInfo:
    """What the registry knows of one attack function (read once from its signature)."""

    name: str
    fn: Callable
    defaults: types.MappingProxyType  # the registry's defaults (e.g. fgsm_targeted's target)
    parameters: frozenset
    takes_seed: bool
    needs_eps: bool
    function_defaults: types.MappingProxyType  # the function's own keyword defaults

    @classmethod
    def of(cls, name: str, fn: Callable, defaults=None) -> "AttackInfo":
        signature = inspect.signature(fn).parameters
        eps = signature.get("eps")
        keyword = {n: p for n, p in signature.items() if p.kind == p.KEYWORD_ONLY}
        return cls(
            name,
            fn,
            types.MappingProxyType(dict(defaults or {})),
            frozenset(keyword),
            "seed" in keyword,
            eps is not None and eps.default is inspect.Parameter.empty,
            types.MappingProxyType(
                {
                    n: p.default
                    for n, p in keyword.items()
                    if p.default is not inspect.Parameter.empty
                }
            ),
        )

    def option(self, options, key):
        """The value of option `key` given `options` (else the registry's, else the function's
        default)."""
        return options.get(key, self.defaults.get(key, self.function_defaults.get(key)))


_REGISTRY: dict = {}


def register(name: str, fn: Callable, **defaults) -> None:
    """Registers `fn` (shared signature, options keyword-only) as `name`, with default options."""
    if name in _REGISTRY:
        raise ValueError(f"Expected a new attack name. Received: {name!r} is already registered")
    _REGISTRY[name] = AttackInfo.of(name, fn, defaults)


def names() -> list:
    return sorted(_REGISTRY)


def lookup(name) -> AttackInfo:
    if callable(name):
        return AttackInfo.of(getattr(name, "__name__", "custom"), name)
    importlib.import_module("tfadv.attacks.catalog")  # registers the attacks on first use
    if name not in _REGISTRY:
        raise ValueError(
            f"Unknown attack {name!r}. Expected one of {names()}. Received: attack={name!r}"
        )
    return _REGISTRY[name]


def _normalise(name: str, value, schema):
    """`value` of option `name` checked against the schema (`schema` None: any attack's option
    of that name), then put in canonical form (the norm's name, the loss's name)."""
    option = schema.options.get(name) if schema else options_schema.ANY_OPTION.get(name)
    if option is not None:
        value = option.check(value)
    if value is None:
        return value
    if name == "norm":
        return norms.get(value, norms.ALL).name
    if name == "loss":
        loss = losses.get(value)  # raises for a loss the schema cannot see (a bad callable)
        return loss.name if losses.LOSSES.get(loss.name) is loss else value
    if name == "target":
        return targets.check_target(value)
    return value


class Attack:
    """A registered attack (or an attack function) with its options.

    Args:
        attack: a registered name (`tfadv.attacks.names()`) or a function
            `(model, images, labels, eps, **options)`.
        **options: the attack's keyword options (steps, alpha, norm, loss, loss_on, target, seed,
        ...).

    Raises:
        ValueError: an unknown name or option, or a bad norm, loss, loss_on or target.
    """

    __slots__ = ("info", "options")

    def __init__(self, attack, **options):
        info = lookup(attack)
        schema = options_schema.SCHEMA.get(info.name) if _REGISTRY.get(info.name) is info else None
        if schema is not None:
            schema.check(options)  # unknown options and plain values, in one line each
        unknown = sorted(set(options) - info.parameters)
        if unknown:
            raise ValueError(
                f"Attack {info.name!r} takes no option(s) {unknown}; it takes "
                f"{sorted(info.parameters)}. Received: {options!r}"
            )
        merged = {**info.defaults, **options}
        object.__setattr__(self, "info", info)
        object.__setattr__(
            self,
            "options",
            types.MappingProxyType({k: _normalise(k, v, schema) for k, v in merged.items()}),
        )

    def __setattr__(self, key, value):
        raise AttributeError("Attack values are immutable; use .replace(**changes)")

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def target(self):
        return self.options.get("target")

    @property
    def takes_seed(self) -> bool:
        return self.info.takes_seed

    @property
    def needs_eps(self) -> bool:
        return self.info.needs_eps

    def replace(self, **changes) -> "Attack":
        """A new Attack with some options changed (None removes an option, back to the default)."""
        options = {**self.options, **changes}
        options = {k: v for k, v in options.items() if v is not None or k in self.info.defaults}
        return Attack(self.info.fn if self.name not in _REGISTRY else self.name, **options)

    def __call__(self, model, images, labels, eps=None, **overrides):
        """The adversarial images (float32, stop-gradient) for `images` under budget `eps`.

        `overrides` change options for this call only (e.g. `seed=(seed, batch)`).
        """
        options = {**self.options, **overrides}
        if "seed" in overrides and overrides["seed"] is not None and not self.takes_seed:
            raise ValueError(
                f"Attack {self.name!r} takes no seed. Received: seed={overrides['seed']!r}"
            )
        if eps is None and self.needs_eps:
            raise ValueError(
                f"Attack {self.name!r} needs eps (pixel scale, e.g. eps=0.03). Received: eps=None"
            )
        result = self.info.fn(model, images, labels, eps, **options)
        return getattr(
            result, "images", result
        )  # the patch attack returns (images, patch, positions)

    def describe(self) -> str:
        """'name(option=value, ...)', readable by `Attack.parse` (seed and jit_compile left out)."""
        shown = {k: v for k, v in sorted(self.options.items()) if k not in ("seed", "jit_compile")}
        if not shown:
            return self.name
        return f"{self.name}({', '.join(f'{k}={_show(v)}' for k, v in shown.items())})"

    def to_config(self) -> dict:
        """JSON-able {"name", "options"} (a callable loss or attack cannot be serialised)."""
        if self.name not in _REGISTRY or any(callable(v) for v in self.options.values()):
            raise ValueError(
                f"Only registered attacks with named losses serialise. Received: {self!r}"
            )
        return {"name": self.name, "options": {k: _jsonable(v) for k, v in self.options.items()}}

    @classmethod
    def from_config(cls, config: dict) -> "Attack":
        return cls(config["name"], **config.get("options", {}))

    @classmethod
    def parse(cls, text: str) -> "Attack":
        """Reads 'pgd', 'pgd(steps=10, loss=margin)' or 'pgd:steps=10,loss=margin'.

        Values are Python literals (10, 0.5, True, None), simple fractions (2/255) or bare words.
        """
        name, given = options_schema.parse(text)
        return cls(name, **given)

    def _key(self):
        return (self.info.fn, tuple(sorted((k, repr(v)) for k, v in self.options.items())))

    def __eq__(self, other):
        return isinstance(other, Attack) and self._key() == other._key()

    def __hash__(self):
        return hash(self._key())

    def __repr__(self):
        return f"Attack({self.describe()!r})"


def _show(value) -> str:
    if isinstance(value, float):
        in_255 = value * 255
        if value and abs(in_255 - round(in_255)) < 1e-6:
            return f"{round(in_255)}/255"
        return repr(value)
    return (
        str(getattr(value, "name", value)) if not isinstance(value, (list, tuple)) else repr(value)
    )


def _jsonable(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def get(attack, **options) -> Attack:
    """An Attack from a name, a spec string ('pgd(steps=10)'), a function or an Attack;
    `options` are added (replacing those of an Attack)."""
    if isinstance(attack, Attack):
        return attack.replace(**options) if options else attack
    if isinstance(attack, str) and ("(" in attack or ":" in attack):
        return Attack.parse(attack).replace(**options) if options else Attack.parse(attack)
    return Attack(attack, **options)
