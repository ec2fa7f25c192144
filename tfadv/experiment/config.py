"""The resolved configuration of a training run (one field per `tfadv.train` flag).

Errors name the fields as Python arguments ("Expected epochs > 0. Received: epochs=0"); the CLI
shows them as flags.
Importing this module imports no TensorFlow: `check_values` runs before the CLI loads it.
"""

import dataclasses
import json
import math
import os

from tfadv.attacks import options as attack_options
from tfadv.runtime import choices

TEST_NOISES = ("none", *choices.TEST_NOISES)
DISTILLATION_RECIPES = ("distill", "distill_variant")
AWP_RECIPES = ("adversarial_batch", "trades", "mart")  # recipes that take awp_gamma
ATTACK_FIELDS = {"attack_steps": "steps", "attack_alpha": "alpha", "attack_loss_on": "loss_on"}
"""Fields given to the training attack where it takes the option (tfadv.attacks.options)."""
# Fields that cannot change a run's results: they may differ when a run is resumed.
RESULT_NEUTRAL_FIELDS = ("resume", "overwrite", "verbose", "output_dir", "run_name")


@dataclasses.dataclass
class TrainConfig:
    # data
    dataset: str = "synthetic"
    data_dir: str = ""
    validation_fraction: float = 0.1
    imbalance: str = "none"
    augment: str = "none"
    train_limit: int = 0
    test_limit: int = 0
    # model
    model: str = "baseline_cnn"
    activation: str = "relu"
    noise: str = "none"
    noise_stddev: float = 0.0
    noise_at_inference: bool = False
    temperature: float = 1.0
    # optimisation
    recipe: str = "standard"
    epochs: int = 10
    batch_size: int = 128
    learning_rate: float = 1e-3
    lr_schedule: str = "constant"  # constant | cosine
    seed: int = 0
    # adversarial training (recipes adversarial_batch / adversarial_epoch / random_noise)
    attack: str = "fgsm"
    eps: float = 0.03
    attack_steps: int = 7
    attack_alpha: float = 0.0  # 0: 2.5 * eps / steps
    attack_loss_on: str = "logits"
    adv_ratio: float = 0.5  # share of adversarial examples in each training batch
    warmup_epochs: int = 0
    eps_ramp_epochs: int = 0
    adv_fraction: float = 1.0  # per-epoch recipe: share of the training set regenerated
    robust_eval_size: int = 256  # fixed validation subset for robust accuracy per epoch
    # evaluation attack of that monitor; "training": the training attack
    monitor_attack: str = "pgd(steps=10, loss=margin)"
    # adversarial_batch: training images PGD-checked each epoch against catastrophic overfitting (0:
    # off)
    guard_images: int = 0
    # stop and restore the previous epoch's weights when that robust accuracy falls this far below
    # its best
    guard_drop: float = 0.2
    # TRADES, MART and adversarial weight perturbation (recipes trades / mart, AWP also
    # adversarial_batch)
    trades_beta: float = 6.0  # weight of KL(f(x) || f(x')); 1 and 6 are the paper's points
    mart_beta: float = 6.0  # weight of MART's misclassification-weighted KL term
    awp_gamma: float = (
        0.0  # relative size of the adversarial weight perturbation (0: off; the paper's 5e-3)
    )
    awp_warmup_epochs: int = 0  # epochs trained without the weight perturbation first
    # the latent-space defence (recipe contrastive; tfadv.defenses.ContrastiveTrainer)
    contrastive_margin: float = 1.0  # pairs of different classes farther apart cost nothing
    contrastive_weight: float = 0.5  # weight of the contrastive term (0: plain cross-entropy)
    contrastive_normalize: bool = True  # distances between unit-length embeddings
    # distillation (recipes defensive_distillation / distillation_variant)
    teacher_temperature: float = 50.0
    student_temperature: float = 50.0
    deploy_temperature: float = 1.0
    teacher_dir: str = ""
    teacher_recipe: str = "standard"
    distill_alpha: float = 1.0  # weight of the soft-label loss; 1 - alpha on hard labels
    test_noise: str = "none"  # none | random_sign | gaussian: test-time noise preprocessing
    test_noise_eps: float = 0.0
    # deployment
    export_tflite: str = (
        ""  # comma list of float32, float16, int8: TFLite exports of the main model
    )
    # run
    output_dir: str = ""
    run_name: str = ""
    overwrite: bool = False
    resume: bool = False
    distribution: str = "default"
    logical_cpus: int = 0
    jit_compile: str = "auto"
    deterministic: bool = True
    verbose: int = 1

    def validate(self) -> "TrainConfig":
        """All checks of the values (TensorFlow is imported for the teacher recipe's name)."""
        self.check_values()
        from tfadv.experiment import recipes

        if self.teacher_recipe not in recipes.trainer_names():
            _fail("teacher_recipe", self.teacher_recipe, f"one of {recipes.trainer_names()}")
        return self

    def check_values(self) -> "TrainConfig":
        """The checks that need no TensorFlow: numbers, ranges, choices, the attacks (against
        tfadv.attacks.options) and the teacher's path."""
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, float) and not math.isfinite(value):
                _fail(field.name, value, "a finite number")
        self._check_run_values()
        for name in ("epochs", "batch_size", "learning_rate", "temperature"):
            self._check_range(name, 0, low_open=True)
        for name in ("teacher_temperature", "student_temperature", "deploy_temperature"):
            self._check_range(name, 0, low_open=True)
        self._check_range("eps", 0, 1, what="in [0, 1] (pixel scale)")
        self._check_range("adv_ratio", 0, 1)
        self._check_range("adv_fraction", 0, 1, low_open=True)
        self._check_range("distill_alpha", 0, 1)
        self._check_range("contrastive_margin", 0, low_open=True)
        self._check_range("contrastive_weight", 0)
        self._check_choice("lr_schedule", ("constant", "cosine"))
        self._check_range("warmup_epochs", 0)
        self._check_range("eps_ramp_epochs", 0)
        self._check_adversarial_values()
        return self

    def _check_range(self, name, low, high=None, low_open=False, high_open=False, what=""):
        """Raises ValueError unless field `name` lies in the range (high None: unbounded)."""
        value = getattr(self, name)
        above = value > low if low_open else value >= low
        below = high is None or (value < high if high_open else value <= high)
        if not (above and below):
            if not what and high is None:
                what = f"{'>' if low_open else '>='} {low}"
            elif not what:
                what = f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
            _fail(name, value, f"{name} {what}")

    def _check_choice(self, name, allowed):
        value = getattr(self, name)
        if (value.lower() if isinstance(value, str) else value) not in allowed:
            _fail(name, value, f"{name} to be one of {tuple(allowed)}")

    def _check_run_values(self) -> None:
        """Data, model and run fields."""
        unknown = [p for p in self.tflite_precisions() if p not in choices.TFLITE_PRECISIONS]
        if unknown:
            _fail(
                "export_tflite",
                self.export_tflite,
                f"a comma list of {', '.join(choices.TFLITE_PRECISIONS)}",
            )
        self._check_range("seed", 0, 2**32, high_open=True, what="in [0, 2**32)")
        self._check_range("validation_fraction", 0, 1, high_open=True)
        for name in ("train_limit", "test_limit", "logical_cpus", "noise_stddev"):
            self._check_range(name, 0)
        self._check_choice("distribution", choices.DISTRIBUTIONS)
        self._check_choice("jit_compile", choices.JIT_CHOICES)
        self._check_choice("verbose", (0, 1, 2))
        if (
            self.recipe in DISTILLATION_RECIPES
            and self.teacher_dir
            and not os.path.exists(self.teacher_dir)
        ):
            raise FileNotFoundError(
                "Expected an existing teacher_dir; it does not exist. "
                f"Received: teacher_dir={self.teacher_dir!r}"
            )

    def _check_adversarial_values(self) -> None:
        """The adversarial-training and distillation fields, the attacks among them checked
        against their schemas (no TensorFlow)."""
        self._check_choice("test_noise", TEST_NOISES)
        self._check_range("attack_alpha", 0, what=">= 0 (0: the attack's default)")
        self._check_range("robust_eval_size", 0, what=">= 0 (0: off)")
        self._check_range("test_noise_eps", 0)
        if self.test_noise != "none" and not self.test_noise_eps > 0:
            _fail(
                "test_noise_eps",
                self.test_noise_eps,
                f"test_noise_eps > 0 with test_noise={self.test_noise!r}",
            )
        self._check_range("guard_images", 0, what=">= 0 (0: off)")
        self._check_range("guard_drop", 0, 1, low_open=True)
        self._check_trades_values()
        batch_trained = self.recipe == "adversarial_batch" or (
            self.recipe in DISTILLATION_RECIPES
            and not self.teacher_dir
            and self.teacher_recipe == "adversarial_batch"
        )
        if self.guard_images and not batch_trained:
            _fail(
                "guard_images",
                self.guard_images,
                f"guard_images=0 with recipe={self.recipe!r} (the guard is an option of recipe "
                "adversarial_batch, or teacher_recipe=adversarial_batch)",
            )
        self._check_attacks()

    def _check_attacks(self) -> None:
        """The training attack (a name or spec of TRAINING_ATTACKS), the ATTACK_FIELDS it takes
        and the monitor's attack, against tfadv.attacks.options."""
        name, given = attack_options.parse(self.attack)
        if name not in attack_options.TRAINING_ATTACKS:
            _fail("attack", self.attack, f"one of {attack_options.TRAINING_ATTACKS} or its spec")
        attack_options.check(name, given)
        if self.recipe == "trades" and name != "pgd":
            _fail(
                "attack",
                self.attack,
                "attack=pgd with recipe trades (it maximises its KL term with pgd, L-inf or L2, "
                "e.g. 'pgd(norm=2)')",
            )
        for field, option_name in ATTACK_FIELDS.items():
            value = getattr(self, field)
            if field == "attack_alpha" and value == 0:
                continue  # the attack's default
            option = attack_options.ANY_OPTION[option_name]
            try:
                option.check(value)
            except ValueError:
                _fail(field, value, f"{field} to be {_option_range(option)} ({option.help})")
        if self.monitor_attack != "training":
            attack_options.check_spec(self.monitor_attack)

    def _check_trades_values(self) -> None:
        """TRADES, MART and AWP fields."""
        for name in ("trades_beta", "mart_beta", "awp_warmup_epochs"):
            self._check_range(name, 0)
        self._check_range("awp_gamma", 0, 1, high_open=True, what="in [0, 1) (0: off)")
        trained = (
            self.teacher_recipe
            if self.recipe in DISTILLATION_RECIPES and not self.teacher_dir
            else self.recipe
        )
        if self.awp_gamma and trained not in AWP_RECIPES:
            _fail(
                "awp_gamma",
                self.awp_gamma,
                f"awp_gamma=0 with recipe={self.recipe!r} (adversarial weight perturbation is an "
                f"option of recipes {', '.join(AWP_RECIPES)}, or such a teacher_recipe)",
            )

    def check_resumable(self, stored: dict) -> None:
        """Raises ValueError naming the first field where this config differs from `stored` (a run
        folder's config.json), fields that cannot change results aside."""
        current = json.loads(self.to_json())
        for name in sorted(current):
            if name in RESULT_NEUTRAL_FIELDS or name not in stored or current[name] == stored[name]:
                continue
            raise ValueError(
                f"Expected {name}={stored[name]!r} as in the config.json of the run being resumed "
                "(resume with the same settings or start a new run). "
                f"Received: {name}={current[name]!r}"
            )

    def tflite_precisions(self) -> list:
        """The TFLite precisions `export_tflite` asks for, in order."""
        return [p.strip() for p in self.export_tflite.split(",") if p.strip()]

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "TrainConfig":
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in json.loads(text).items() if k in fields})


def _fail(name: str, value, what: str):
    raise ValueError(f"Expected {what}. Received: {name}={value!r}")


def _option_range(option) -> str:
    if option.choices:
        return f"one of {option.choices}"
    return f"{'an integer' if option.type is int else 'a number'} {option.range_text()}"
