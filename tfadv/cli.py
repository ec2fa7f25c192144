"""Helpers shared by the command-line entry points: flags from dataclasses, one-line errors."""

import dataclasses
import sys

from absl import flags

from tfadv.errors import UserInputError


def define_flags_from_dataclass(cls, help_texts: dict, flag_values=flags.FLAGS):
    """Defines one absl flag per dataclass field, typed by the field's default."""
    for field in dataclasses.fields(cls):
        default = field.default
        help_text = help_texts.get(field.name, field.name.replace("_", " "))
        if isinstance(default, bool):
            flags.DEFINE_bool(field.name, default, help_text, flag_values=flag_values)
        elif isinstance(default, int):
            flags.DEFINE_integer(field.name, default, help_text, flag_values=flag_values)
        elif isinstance(default, float):
            flags.DEFINE_float(field.name, default, help_text, flag_values=flag_values)
        else:
            flags.DEFINE_string(field.name, default, help_text, flag_values=flag_values)


def dataclass_from_flags(cls, flag_values=flags.FLAGS):
    return cls(**{f.name: flag_values[f.name].value for f in dataclasses.fields(cls)})


def parse_flags_one_line_errors(argv):
    """absl flags parser that reports a bad flag or flagfile as one line, exit code 2."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        message = str(e).removeprefix("ERROR:: ").strip().splitlines()[0]
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def fail(message: str, code: int = 2):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


USER_ERRORS = (UserInputError, FileNotFoundError, PermissionError, NotADirectoryError)
