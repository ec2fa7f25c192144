"""The resolved configuration of a training run (one field per `tfadv.train` flag).

Errors name the fields as Python arguments (`epochs=0: must be > 0`); the CLI shows them as flags.
Importing this module imports no TensorFlow: `check_values` runs before the CLI loads it.
"""

import dataclasses
import json
import math
import os

# Attacks that can run inside a training step (compiled gradient attacks and the control).
TRAINING_ATTACKS = ("fgsm", "fgsm_random", "pgd", "bim", "random_sign")
TEST_NOISES = (
    "none",
    "random_sign",
    "gaussian",
)  # "none" and tfadv.defenses.test_noise.TEST_NOISES
DISTRIBUTIONS = ("default", "mirrored", "multi_worker")  # tfadv.runtime.devices.DISTRIBUTIONS
JIT_CHOICES = ("auto", "true", "false")
DISTILLATION_RECIPES = ("distill", "distill_variant")
TFLITE_PRECISIONS = ("float32", "float16", "int8")  # tfadv.models.tflite.PRECISIONS
AWP_RECIPES = ("adversarial_batch", "trades", "mart")  # recipes that take awp_gamma
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
    monitor_attack: str = "pgd(steps=10, loss=margin)"  # evaluation attack of that monitor; "training": the training attack
    guard_images: int = 0  # adversarial_batch: training images PGD-checked each epoch against catastrophic overfitting (0: off)
    guard_drop: float = 0.2  # stop and restore the previous epoch's weights when that robust accuracy falls this far below its best
    # TRADES, MART and adversarial weight perturbation (recipes trades / mart, AWP also adversarial_batch)
    trades_beta: float = 6.0  # weight of KL(f(x) || f(x')); 1 and 6 are the paper's points
    mart_beta: float = 6.0  # weight of MART's misclassification-weighted KL term
    awp_gamma: float = (
        0.0  # relative size of the adversarial weight perturbation (0: off; the paper's 5e-3)
    )
    awp_warmup_epochs: int = 0  # epochs trained without the weight perturbation first
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
        """All checks of the values (TensorFlow is imported for the attack names)."""
        self.check_values()
        self._validate_adversarial()
        return self

    def check_values(self) -> "TrainConfig":
        """The checks that need no TensorFlow: numbers, ranges, plain choices and the teacher's path."""
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{field.name}={value}: must be a finite number")
        self._check_run_values()
        positive_ints = ("epochs", "batch_size")
        for name in positive_ints:
            value = getattr(self, name)
            if value <= 0:
                raise ValueError(f"{name}={value}: must be > 0")
        for name in (
            "learning_rate",
            "temperature",
            "teacher_temperature",
            "student_temperature",
            "deploy_temperature",
        ):
            value = getattr(self, name)
            if value <= 0:
                raise ValueError(f"{name}={value}: must be > 0")
        if self.eps < 0 or self.eps > 1:
            raise ValueError(f"eps={self.eps}: must be in [0, 1] (pixel scale)")
        if not 0 <= self.adv_ratio <= 1:
            raise ValueError(f"adv_ratio={self.adv_ratio}: must be in [0, 1]")
        if not 0 < self.adv_fraction <= 1:
            raise ValueError(f"adv_fraction={self.adv_fraction}: must be in (0, 1]")
        if not 0 <= self.distill_alpha <= 1:
            raise ValueError(f"distill_alpha={self.distill_alpha}: must be in [0, 1]")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"lr_schedule={self.lr_schedule!r}: expected constant or cosine")
        if self.warmup_epochs < 0 or self.eps_ramp_epochs < 0:
            raise ValueError(
                f"warmup_epochs={self.warmup_epochs}, eps_ramp_epochs={self.eps_ramp_epochs}: must be >= 0"
            )
        self._check_adversarial_values()
        return self

    def _check_run_values(self) -> None:
        """Data, model and run fields."""
        unknown = [p for p in self.tflite_precisions() if p not in TFLITE_PRECISIONS]
        if unknown:
            raise ValueError(
                f"export_tflite={self.export_tflite!r}: expected a comma list of {', '.join(TFLITE_PRECISIONS)}"
            )
        if not 0 <= self.seed < 2**32:
            raise ValueError(f"seed={self.seed}: must be in [0, 2**32)")
        if not 0 <= self.validation_fraction < 1:
            raise ValueError(f"validation_fraction={self.validation_fraction}: must be in [0, 1)")
        for name in ("train_limit", "test_limit", "logical_cpus", "noise_stddev"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)}: must be >= 0")
        choices = {"distribution": DISTRIBUTIONS, "jit_compile": JIT_CHOICES, "verbose": (0, 1, 2)}
        for name, allowed in choices.items():
            value = getattr(self, name)
            if (value.lower() if isinstance(value, str) else value) not in allowed:
                raise ValueError(
                    f"{name}={value!r}: expected one of {', '.join(map(str, allowed))}"
                )
        if (
            self.recipe in DISTILLATION_RECIPES
            and self.teacher_dir
            and not os.path.exists(self.teacher_dir)
        ):
            raise FileNotFoundError(f"teacher_dir={self.teacher_dir!r} does not exist")

    def _check_adversarial_values(self) -> None:
        """TensorFlow-free checks of the adversarial-training and distillation flags."""
        choices = {"attack_loss_on": ("logits", "probabilities"), "test_noise": TEST_NOISES}
        for name, allowed in choices.items():
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"{name}={value!r}: expected one of {', '.join(allowed)}")
        if self.attack_steps <= 0:
            raise ValueError(f"attack_steps={self.attack_steps}: must be > 0")
        if self.attack_alpha < 0:
            raise ValueError(
                f"attack_alpha={self.attack_alpha}: must be >= 0 (0: the attack's default)"
            )
        if self.robust_eval_size < 0:
            raise ValueError(f"robust_eval_size={self.robust_eval_size}: must be >= 0 (0: off)")
        if self.test_noise != "none" and not self.test_noise_eps > 0:
            raise ValueError(
                f"test_noise={self.test_noise} needs test_noise_eps > 0. Received: test_noise_eps={self.test_noise_eps}"
            )
        if self.test_noise_eps < 0:
            raise ValueError(f"test_noise_eps={self.test_noise_eps}: must be >= 0")
        if self.guard_images < 0:
            raise ValueError(f"guard_images={self.guard_images}: must be >= 0 (0: off)")
        if not 0 < self.guard_drop <= 1:
            raise ValueError(f"guard_drop={self.guard_drop}: must be in (0, 1]")
        self._check_trades_values()
        batch_trained = self.recipe == "adversarial_batch" or (
            self.recipe in ("distill", "distill_variant")
            and not self.teacher_dir
            and self.teacher_recipe == "adversarial_batch"
        )
        if self.guard_images and not batch_trained:
            raise ValueError(
                f"guard_images={self.guard_images}: the guard is an option of recipe adversarial_batch "
                f"(or teacher_recipe=adversarial_batch); recipe={self.recipe!r}"
            )

    def _check_trades_values(self) -> None:
        """TRADES, MART and AWP fields."""
        for name in ("trades_beta", "mart_beta"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)}: must be >= 0")
        if not 0 <= self.awp_gamma < 1:
            raise ValueError(f"awp_gamma={self.awp_gamma}: must be in [0, 1) (0: off)")
        if self.awp_warmup_epochs < 0:
            raise ValueError(f"awp_warmup_epochs={self.awp_warmup_epochs}: must be >= 0")
        trained = (
            self.teacher_recipe
            if self.recipe in DISTILLATION_RECIPES and not self.teacher_dir
            else self.recipe
        )
        if self.awp_gamma and trained not in AWP_RECIPES:
            raise ValueError(
                f"awp_gamma={self.awp_gamma}: adversarial weight perturbation is an option of recipes "
                f"{', '.join(AWP_RECIPES)} (or such a teacher_recipe); recipe={self.recipe!r}"
            )

    def _validate_adversarial(self) -> None:
        """The training attack and the teacher recipe, looked up in their registries."""
        from tfadv import attacks

        attack = attacks.get(self.attack)  # a name or a spec such as 'pgd(steps=7)'
        if attack.name not in TRAINING_ATTACKS:
            raise ValueError(
                f"attack={self.attack!r}: expected one of {', '.join(TRAINING_ATTACKS)}"
            )
        if self.recipe == "trades" and attack.name != "pgd":
            raise ValueError(
                f"attack={self.attack!r}: recipe trades maximises its KL term with pgd (L-inf or "
                "L2, e.g. 'pgd(norm=2)'); expected attack=pgd"
            )
        from tfadv.experiment import recipes

        if self.teacher_recipe not in recipes.trainer_names():
            raise ValueError(
                f"teacher_recipe={self.teacher_recipe!r}: expected one of {', '.join(recipes.trainer_names())}"
            )

    def check_resumable(self, stored: dict) -> None:
        """Raises ValueError naming the first field where this config differs from `stored` (a run
        folder's config.json), fields that cannot change results aside."""
        current = json.loads(self.to_json())
        for name in sorted(current):
            if name in RESULT_NEUTRAL_FIELDS or name not in stored or current[name] == stored[name]:
                continue
            raise ValueError(
                f"{name}={current[name]!r} differs from the run being resumed, which has {stored[name]!r} "
                "in its config.json; resume with the same settings or start a new run"
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
