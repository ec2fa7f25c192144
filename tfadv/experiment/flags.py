"""Helpers shared by the command-line entry points: flags from dataclasses, and one place
that turns the library's errors (which name Python arguments: `eps=5.0`) into one-line
messages that name flags (`--eps=5.0`)."""

import dataclasses
import functools
import os
import re
import sys

from absl import app, flags


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


def run(define_flags, main) -> None:
    """`python -m tfadv.<command>`: defines the command's flags on absl's global flags.FLAGS (where
    app.run's --help/--helpfull look), then runs `main(argv, flag_values=flags.FLAGS)` under
    app.run,
    bad flags and flagfiles reported in one line."""
    define_flags(flags.FLAGS)
    app.run(
        functools.partial(main, flag_values=flags.FLAGS), flags_parser=parse_flags_one_line_errors
    )


def fail(message: str, code: int = 2):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


USER_ERRORS = (ValueError, TypeError, OSError)
"""Errors the library raises for bad input: the CLIs print them as one line and exit 2
(set TFADV_DEBUG=1 to see the traceback instead)."""


def flag_message(error: BaseException, flag_names, renames=None) -> str:
    """The first line of `error`, with `name=` written `--name=` for every flag name (and
    `arg=` written `--flag=` for `renames` {arg: flag}); `name=True` becomes `--name`."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    mapping = {name: name for name in flag_names}
    mapping.update(renames or {})
    for argument in sorted(mapping, key=len, reverse=True):
        flag, before = mapping[argument], rf"(?<![\w\-.'\"]){re.escape(argument)}"
        text = re.sub(before + r"=True\b", f"--{flag}", text)
        text = re.sub(before + r"=False\b", f"--no{flag}", text)
        text = re.sub(before + "=", f"--{flag}=", text)
    return text


def run_main(work, flag_names, renames=None, interrupted: str = "interrupted"):
    """Runs `work()` and returns its result; bad input exits with one `error:` line (code 2),
    Ctrl-C with code 130."""
    try:
        return work()
    except USER_ERRORS as e:
        if os.environ.get("TFADV_DEBUG"):
            raise
        fail(flag_message(e, flag_names, renames))
    except KeyboardInterrupt:
        fail(interrupted, code=130)
