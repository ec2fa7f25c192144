"""The run folder: where a run writes, what it may replace, and how its models are found again.

    RUN/config.json          the resolved configuration
    RUN/models/NAME/         SavedModel (serving_default -> probabilities, logits -> logits)
    RUN/models/NAME.keras    the Keras model
    RUN/summary.json         results; "main" names the model the run reports on
    RUN/logs/, RUN/checkpoints/, RUN/attacks/, RUN/evaluations/

Importing this module imports no TensorFlow (the CLIs check paths before loading it).
"""

import json
import os
import shutil
import tempfile

CONFIG_FILE = "config.json"
SUMMARY_FILE = "summary.json"
MODELS_DIR = "models"


def default_output_dir(config) -> str:
    name = config.run_name or f"{config.recipe}-{config.model}-{config.dataset}"
    return os.path.join("saved_models", name)


def check_output_dir(config) -> str:
    """Validates output_dir against overwrite/resume without touching the disk.

    With resume=True an existing run folder is continued (overwrite is then not consulted,
    so a config that sets overwrite can be resumed as it is) if its config.json matches this
    one (fields that cannot change results aside); an absent one is started.
    """
    output_dir = config.output_dir or default_output_dir(config)
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise ValueError(f"Expected a folder, not a file. Received: output_dir={output_dir!r}")
    check_writable(output_dir)
    if os.path.isdir(output_dir) and os.listdir(output_dir):
        is_run = is_run_folder(output_dir)
        if config.resume:
            if not is_run:
                raise ValueError(
                    f"Expected a tfadv run folder (with {CONFIG_FILE}) to resume; it is not a "
                    f"tfadv run folder. Received: output_dir={output_dir!r}"
                )
            config.check_resumable(stored_config(output_dir))
        elif not config.overwrite:
            raise ValueError(
                "Expected a new output folder, overwrite=True to replace it or resume=True to "
                f"continue it; it already exists. Received: output_dir={output_dir!r}"
            )
        elif not is_run:
            raise ValueError(
                f"Expected a tfadv run folder (with {CONFIG_FILE}): overwrite=True refuses to "
                f"delete anything else. Received: output_dir={output_dir!r}"
            )
    return output_dir


def stored_config(output_dir: str) -> dict:
    """The config.json of a run folder, as a dict (ValueError when it cannot be read)."""
    path = os.path.join(output_dir, CONFIG_FILE)
    try:
        stored = read_json(path)
    except (OSError, ValueError) as e:
        raise ValueError(f"resume=True: cannot read {path!r} ({str(e).splitlines()[0]})") from None
    if not isinstance(stored, dict):
        raise ValueError(f"resume=True: {path!r} does not hold a configuration")
    return stored


def is_run_folder(path: str) -> bool:
    return os.path.isdir(path) and os.path.exists(os.path.join(path, CONFIG_FILE))


def read_json(path: str) -> dict:
    """A JSON file as a dict ({} when absent)."""
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def _nearest_existing_parent(path: str) -> str:
    path = os.path.abspath(path)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return path


def check_writable(path: str, argument: str = "output_dir") -> None:
    """Creates and removes a probe folder where `path` would go (root ignores os.access)."""
    parent = _nearest_existing_parent(path)
    if not os.path.isdir(parent):
        raise ValueError(
            f"Expected a writable place; it is not writable: {parent!r} is a file. "
            f"Received: {argument}={path!r}"
        )
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".tfadv-probe-", dir=parent))
    except OSError as e:
        raise ValueError(
            f"Expected a writable place; it is not writable ({e.strerror} in {parent!r}). "
            f"Received: {argument}={path!r}"
        ) from None


def check_new_folder(path: str, overwrite: bool, argument: str = "output_dir") -> None:
    """An output folder that may be written: absent, empty, or replaced with `overwrite`."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"Expected a folder, not a file. Received: {argument}={path!r}")
    check_writable(path, argument)
    if os.path.isdir(path) and os.listdir(path) and not overwrite:
        raise ValueError(
            "Expected a new or empty folder (or overwrite=True to replace it); it already "
            f"exists. Received: {argument}={path!r}"
        )


def export_models(output_dir: str, named_models: dict) -> dict:
    """Writes every model as RUN/models/NAME.keras and RUN/models/NAME/ (SavedModel); {name:
    SavedModel path}."""
    from tfadv import models

    paths = {}
    for name, model in named_models.items():
        base = os.path.join(output_dir, MODELS_DIR, name)
        models.save_keras(model, base + ".keras")
        paths[name] = models.export_saved_model(model, base)
    return paths


def resolve_model_path(path: str, name: str = "", argument: str = "model") -> str:
    """A run folder (its main model, or `name`), a .keras file or a SavedModel, as a file path.

    Errors name `argument` (the Python argument or flag the path came from).
    """
    if not path or not os.path.exists(path):
        raise FileNotFoundError(
            f"Expected an existing path; it does not exist. Received: {argument}={path!r}"
        )
    summary = os.path.join(path, SUMMARY_FILE)
    if os.path.isdir(path) and os.path.exists(summary):
        run = read_json(summary)
        name = name or run.get("main", "model")
        candidate = os.path.join(path, MODELS_DIR, name + ".keras")
        if not os.path.exists(candidate) and os.path.exists(
            candidate[: -len(".keras")] + ".tflite"
        ):
            return candidate[: -len(".keras")] + ".tflite"  # a deployed export (--export_tflite)
        if not os.path.exists(candidate):
            raise ValueError(
                f"Expected one of the run's models {sorted(run.get('exports', {}))}; the run has "
                f"no model {name!r}. Received: {argument}={path!r}"
            )
        return candidate
    if name:
        raise ValueError(
            f"Expected a run folder to take a model name; it has no model named {name!r}. "
            f"Received: {argument}={path!r}"
        )
    return path


def load_model(path: str, name: str = "", argument: str = "model", output=None):
    """`tfadv.models.load` of a run folder's model, a .keras file or a SavedModel; errors name
    `argument`."""
    from tfadv import models

    resolved = resolve_model_path(path, name, argument)
    try:
        return models.load(resolved, output=output)
    except (ValueError, OSError) as e:
        raise renamed(e, argument, path) from e


def renamed(error: BaseException, argument: str, value) -> ValueError:
    """`error`'s first line as a ValueError that names `argument`: "Expected ... Received:
    <argument>=<value!r>" (the Received part of `error`, naming another argument, replaced)."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    expected = (
        text.split(" Received: ")[0]
        if text.startswith("Expected")
        else f"Expected a loadable {argument} ({text})"
    )
    return ValueError(f"{expected.rstrip('.')}. Received: {argument}={value!r}")


def replace_folder(path: str) -> None:
    """Deletes a previous run folder (only a tfadv run folder) before a new run is written there.

    The folder is first renamed away in one step, so a kill while deleting leaves a hidden
    `.NAME.old-*` folder beside it, never half a run folder under its name."""
    if os.path.isdir(path):
        if os.listdir(path) and not is_run_folder(path):
            raise ValueError(
                f"Expected a tfadv run folder (with {CONFIG_FILE}): overwrite refuses to delete "
                f"anything else. Received: path={path!r}"
            )
        parent = os.path.dirname(os.path.abspath(path))
        old = tempfile.mkdtemp(
            prefix=f".{os.path.basename(os.path.normpath(path))}.old-", dir=parent
        )
        os.replace(path, os.path.join(old, "run"))
        shutil.rmtree(old)
