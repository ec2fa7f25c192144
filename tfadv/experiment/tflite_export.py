"""TFLite exports of an existing run's main model, without retraining (as --export_tflite would
have written them): RUN/models/NAME_PRECISION.tflite, listed in RUN/summary.json.

    python -m tfadv.experiment.tflite_export RUN [float32,float16,int8]
    export_run_tflite("runs/standard10", "int8")

int8 is calibrated on the same seeded draw of the run's training split as at training time.
"""

import dataclasses
import os
import sys

from tfadv.experiment import run_folder

DEFAULT_FORMATS = "float32,float16,int8"


def export_run_tflite(run_dir: str, formats: str = DEFAULT_FORMATS) -> dict:
    """Exports the run's main model in `formats` (comma list of float32, float16, int8) and adds
    them to summary.json's "tflite" (size, clean test accuracy, agreement with the float model).

    Returns:
        {name: entry} of the new exports.

    Raises:
        ValueError: not a run folder, an unknown format.
    """
    from tfadv.experiment.config import TrainConfig
    from tfadv.runtime.choices import TFLITE_PRECISIONS

    if not run_folder.is_run_folder(run_dir) or not os.path.exists(
        os.path.join(run_dir, run_folder.SUMMARY_FILE)
    ):
        raise ValueError(f"Expected a finished run folder. Received: run_dir={run_dir!r}")
    wanted = [p.strip() for p in formats.split(",") if p.strip()]
    if not wanted or any(p not in TFLITE_PRECISIONS for p in wanted):
        raise ValueError(
            f"Expected a comma list of {', '.join(TFLITE_PRECISIONS)}. "
            f"Received: formats={formats!r}"
        )
    from tfadv.experiment import run as run_lib
    from tfadv.runtime.files import write_json

    with open(os.path.join(run_dir, run_folder.CONFIG_FILE)) as f:
        config = TrainConfig.from_json(f.read())
    config = dataclasses.replace(config, export_tflite=",".join(wanted), output_dir=run_dir)
    dataset = run_lib.load_data(config)  # the training split and the seed of the run
    summary_path = os.path.join(run_dir, run_folder.SUMMARY_FILE)
    summary = run_folder.read_json(summary_path)
    name = summary.get("main", "model")
    model = run_folder.load_model(run_dir, name, "run_dir")
    written = run_lib._export_tflite(
        config, dataset, model, name, run_dir, dataset.test.float_images(), dataset.test.labels
    )
    summary["tflite"] = {**summary.get("tflite", {}), **written}
    write_json(summary_path, summary)
    return written


def main(argv) -> int:
    if len(argv) not in (2, 3):
        print(
            f"usage: python -m tfadv.experiment.tflite_export RUN [{DEFAULT_FORMATS}]",
            file=sys.stderr,
        )
        return 2
    try:
        written = export_run_tflite(argv[1], argv[2] if len(argv) == 3 else DEFAULT_FORMATS)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    for label, entry in written.items():
        print(
            f"{label}: {entry['bytes']:,} bytes, clean test accuracy {entry['test_accuracy']:.4f}, "
            f"agrees with the float model on {100 * entry['agreement']:.1f}%  -> {entry['path']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
