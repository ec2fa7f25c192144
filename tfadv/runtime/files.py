"""All-or-nothing writes: a file or folder is written under a temporary name and renamed."""

import json
import os
import shutil
import tempfile


def atomic_dir(final_path: str, write) -> str:
    """Calls write(tmp_folder) and renames tmp_folder to final_path: all or nothing.

    An existing final_path is replaced only once the new folder is complete.
    """
    parent = os.path.dirname(os.path.abspath(final_path))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(final_path)}.tmp-", dir=parent)
    try:
        write(tmp)
        if os.path.exists(final_path):
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(final_path)}.old-", dir=parent)
            os.replace(final_path, os.path.join(old, "x"))
            os.replace(tmp, final_path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final_path)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return final_path


def atomic_file(path: str, write) -> str:
    """Calls write(tmp_path) (same extensions, e.g. ".weights.h5", same folder) and renames tmp_path
    to path: all or nothing."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    name = os.path.basename(path).lstrip(".")
    suffix = "." + name.split(".", 1)[1] if "." in name else ""
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def write_json(path: str, payload) -> str:
    """Writes `payload` as indented JSON, atomically."""

    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(payload, f, indent=2, sort_keys=True, default=str)

    return atomic_file(path, write)


def write_text(path: str, text: str) -> str:
    """Writes `text`, atomically."""

    def write(tmp):
        with open(tmp, "w") as f:
            f.write(text)

    return atomic_file(path, write)
