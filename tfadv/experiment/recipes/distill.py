"""Defensive-distillation recipes (Papernot et al. 2016; the van Everdingen variant).

    distill          teacher trained at teacher_temperature; student trained at
                     student_temperature on the teacher's soft labels at that temperature;
                     student deployed at deploy_temperature.
    distill_variant  teacher trained at teacher_temperature (e.g. 1), its temperature raised
                     to student_temperature (e.g. 4) after training; student trained and
                     deployed at student_temperature.

The teacher is trained in the run by teacher_recipe (any single-model recipe) or loaded from
teacher_dir. Exported: "teacher" (at its training temperature), the student at each
temperature ("student_T50", "student_T1", ...; same weights, only the temperature differs)
and, with test_noise, the main model behind a noise layer.
"""

import keras

from tfadv import models
from tfadv.defenses import Distiller
from tfadv.experiment import training
from tfadv.experiment.recipes import RecipeResult, RunContext, register
from tfadv.experiment.recipes import trainer as recipe_trainer


def get_teacher(ctx: RunContext):
    """The teacher: loaded from teacher_dir (checked before the run started), or trained here."""
    config = ctx.config
    if config.teacher_dir:
        with ctx.strategy.scope():
            return training.load_teacher(config, ctx.data)
    trainer = recipe_trainer(config.teacher_recipe)
    return trainer(ctx, stage="teacher", temperature=config.teacher_temperature)


def distill(ctx: RunContext, teacher):
    """Trains a new student (stage "student") on `teacher`'s soft labels at student_temperature.

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
        named[name_at("teacher", config.student_temperature)] = at_temperature(
            ctx, teacher, config.student_temperature
        )
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


@register("distill")
def run_defensive(ctx: RunContext) -> RecipeResult:
    """Teacher and student at T; the student deployed at deploy_temperature (1 in the paper)."""
    return _run(ctx, (ctx.config.deploy_temperature,), raised_teacher=False)


@register("distill_variant")
def run_variant(ctx: RunContext) -> RecipeResult:
    """Teacher trained at T=1 (teacher_temperature), raised to the student's T after training;
    the student is trained and deployed at that T (deploy_temperature is not used)."""
    return _run(ctx, (ctx.config.student_temperature,), raised_teacher=True)
