"""Defensive-distillation recipes (Papernot et al. 2016; the van Everdingen variant).

    defensive_distillation  teacher trained at --teacher_temperature; student trained at
                            --student_temperature on the teacher's soft labels at that
                            temperature; student deployed at --deploy_temperature.
    distillation_variant    teacher trained at --teacher_temperature (e.g. 1), its temperature
                            raised to --student_temperature (e.g. 4) after training; student
                            trained and deployed at --student_temperature.

The teacher is trained in the run by --teacher_recipe (standard or an adversarial recipe)
or loaded with --teacher_dir. Exported: "teacher" (at its training temperature), the
student at each temperature ("student_T50", "student_T1", ...; same weights, only the
temperature differs) and, with --test_noise, the main model behind a noise layer.
"""

import keras

from tfadv import export, models, training
from tfadv.distill import Distiller
from tfadv.errors import UserInputError
from tfadv.recipes import RecipeResult, RunContext, register
from tfadv.recipes.adversarial import TRAINERS as ADVERSARIAL_TRAINERS


def train_standard(ctx: RunContext, stage="model", **option_overrides):
    """A classifier trained on clean data (the standard recipe, in a named stage)."""
    model = training.build_and_compile(ctx, **option_overrides)
    training.fit(ctx, model, stage)
    return model


TEACHER_TRAINERS = {"standard": train_standard, **ADVERSARIAL_TRAINERS}


def load_teacher(ctx: RunContext):
    """The teacher from --teacher_dir (run folder or .keras), checked against the run's data."""
    path = ctx.config.teacher_dir
    with ctx.strategy.scope():
        teacher = export.load(path, flag="--teacher_dir")
    if not isinstance(teacher, keras.Model):
        raise UserInputError(f"--teacher_dir={path!r}: need a Keras model (.keras or a run folder), not a SavedModel")
    try:
        models.softmax_layer(teacher)
    except ValueError as e:
        raise UserInputError(f"--teacher_dir={path!r}: {e}") from e
    expected = (tuple(ctx.data.input_shape), ctx.data.num_classes)
    found = (tuple(teacher.input_shape[1:]), teacher.output_shape[-1])
    if found != expected:
        raise UserInputError(
            f"--teacher_dir={path!r}: teacher takes {found[0]} images and has {found[1]} classes; "
            f"this run's data has {expected[0]} and {expected[1]}"
        )
    return teacher


def get_teacher(ctx: RunContext):
    config = ctx.config
    if config.teacher_dir:
        return load_teacher(ctx)
    return TEACHER_TRAINERS[config.teacher_recipe](ctx, stage="teacher", temperature=config.teacher_temperature)


def distill(ctx: RunContext, teacher):
    """Trains a new student (stage "student") on `teacher`'s soft labels at --student_temperature.

    The student's softmax is at that temperature when it returns.
    """
    config = ctx.config
    temperature = config.student_temperature
    with ctx.strategy.scope():
        student = training.build_model(ctx, temperature=temperature)
        distiller = Distiller(teacher, student, temperature=temperature, alpha=config.distill_alpha)
        distiller.compile(optimizer=training.make_optimizer(ctx), jit_compile=ctx.jit_compile)
    training.fit(ctx, distiller, stage="student")
    return student


def at_temperature(ctx: RunContext, model, temperature: float):
    """A copy of `model` (same weights) with its softmax at `temperature`."""
    with ctx.strategy.scope():
        copy = keras.models.clone_model(model)
        copy.set_weights(model.get_weights())
    models.set_temperature(copy, temperature)
    return copy


def name_at(prefix: str, temperature: float) -> str:
    return f"{prefix}_T{temperature:g}"


def _run(ctx: RunContext, deploy_temperatures, raised_teacher: bool) -> RecipeResult:
    config = ctx.config
    teacher = get_teacher(ctx)
    teacher_temperature = models.get_temperature(teacher)
    models.set_temperature(teacher, config.student_temperature)  # the soft labels' temperature
    student = distill(ctx, teacher)
    named = {"teacher": teacher}
    if raised_teacher and teacher_temperature != config.student_temperature:
        named[name_at("teacher", config.student_temperature)] = at_temperature(ctx, teacher, config.student_temperature)
    models.set_temperature(teacher, teacher_temperature)
    named[name_at("student", config.student_temperature)] = student
    for temperature in deploy_temperatures:
        name = name_at("student", temperature)
        if name not in named:
            named[name] = at_temperature(ctx, student, temperature)
    main = name_at("student", deploy_temperatures[-1])
    notes = {
        "teacher": config.teacher_dir or f"trained here ({config.teacher_recipe})",
        "temperatures": (
            f"teacher trained at T={teacher_temperature:g}, soft labels and student at "
            f"T={config.student_temperature:g}, deployed at T={deploy_temperatures[-1]:g}"
        ),
        "distill_alpha": config.distill_alpha,
    }
    return RecipeResult(models=named, main=main, notes=notes)


@register("defensive_distillation")
def run_defensive(ctx: RunContext) -> RecipeResult:
    """Teacher and student at T; the student deployed at --deploy_temperature (1 in the paper)."""
    return _run(ctx, (ctx.config.deploy_temperature,), raised_teacher=False)


@register("distillation_variant")
def run_variant(ctx: RunContext) -> RecipeResult:
    """Teacher trained at T=1 (--teacher_temperature), raised to the student's T after training;
    the student is trained and deployed at that T (--deploy_temperature is not used)."""
    return _run(ctx, (ctx.config.student_temperature,), raised_teacher=True)
