"""All-or-nothing writes: a file or folder is written under a temporary name and renamed.

A folder that already exists is replaced by one atomic exchange where the OS allows it (Linux
`renameat2(RENAME_EXCHANGE)`): at every moment `final_path` is the complete old folder or the
complete new one. Elsewhere it falls back to two renames (old folder away, new one in), with
a window in which `final_path` is absent but never partial. A kill leaves at most hidden
temporaries (`is_temporary`) next to the target, which a resumed run removes.
"""

import ctypes
import ctypes.util
import errno
import json
import os
import shutil
import sys
import tempfile

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_TEMPORARY_MARKERS = (".tmp-", ".old-")


def is_temporary(name: str) -> bool:
    """True for the names `atomic_file` and `atomic_dir` give their temporaries."""
    return name.startswith(".") and any(marker in name for marker in _TEMPORARY_MARKERS)


def _load_renameat2():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.renameat2  # glibc >= 2.28
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_renameat2 = _load_renameat2()


def exchange(a: str, b: str) -> bool:
    """Atomically swaps the paths `a` and `b` (both must exist); False when the OS or file
    system cannot (then nothing changed)."""
    if _renameat2 is None:
        return False
    if _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(code, f"renameat2(RENAME_EXCHANGE) {a!r} <-> {b!r}: {os.strerror(code)}")


def replace_dir(new: str, final_path: str) -> None:
    """Moves the folder `new` to `final_path`, replacing an existing folder there (see the module
    doc)."""
    if not os.path.exists(final_path):
        os.replace(new, final_path)
        return
    if exchange(new, final_path):  # `new` now holds the old folder
        shutil.rmtree(new, ignore_errors=True)
        return
    parent = os.path.dirname(os.path.abspath(final_path))
    old = tempfile.mkdtemp(prefix=f".{os.path.basename(final_path)}.old-", dir=parent)
    os.replace(final_path, os.path.join(old, "x"))
    os.replace(new, final_path)
    shutil.rmtree(old, ignore_errors=True)


def atomic_dir(final_path: str, write) -> str:
    """Calls write(tmp_folder) and moves tmp_folder to final_path: all or nothing.

    An existing final_path is replaced only once the new folder is complete.
    """
    parent = os.path.dirname(os.path.abspath(final_path))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(final_path)}.tmp-", dir=parent)
    try:
        write(tmp)
        replace_dir(tmp, final_path)
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


def link_tree(source: str, destination: str) -> None:
    """Recreates the folder tree `source` at `destination` with hard links to its files (copies
    where the file system has no hard links). For folders whose files are only ever replaced by
    renames, never changed in place (an evaluation store): the copy stays valid, costs no space,
    and lets a folder holding it be rewritten atomically with `atomic_dir`."""
    for parent, _, files in os.walk(source):
        target = os.path.join(destination, os.path.relpath(parent, source))
        os.makedirs(target, exist_ok=True)
        for name in files:
            if is_temporary(name):
                continue
            try:
                os.link(os.path.join(parent, name), os.path.join(target, name))
            except OSError:
                shutil.copy2(os.path.join(parent, name), os.path.join(target, name))
