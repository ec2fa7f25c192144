"""tfadv.attacks lists its exported names once (its __init__); the catalog defines each and takes
its __all__ from there, and the package stays importable without TensorFlow."""

import os
import subprocess
import sys

from conftest import REPO_ROOT


def test_package_names_need_no_tensorflow_and_the_catalog_defines_each():
    code = """
import sys
import tfadv.attacks as attacks
import tfadv.attacks.options
assert "tensorflow" not in sys.modules, "tfadv.attacks loaded TensorFlow"
names = list(attacks.__all__)
assert set(names) <= set(dir(attacks))
from tfadv.attacks import catalog
assert catalog.__all__ == names, (catalog.__all__, names)
for name in names:
    assert getattr(attacks, name) is getattr(catalog, name), name
print(len(names))
"""
    env = dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert int(result.stdout.split()[-1]) >= 40


def test_a_name_set_on_the_package_wins_over_the_catalog(monkeypatch):
    from tfadv import attacks
    from tfadv.attacks import catalog

    def stand_in(*args, **kwargs):
        return "stand-in"

    monkeypatch.setattr(attacks, "pgd", stand_in)
    assert attacks.pgd is stand_in
    assert catalog.pgd is not stand_in
    monkeypatch.undo()
    assert attacks.pgd is catalog.pgd


def test_every_attack_module_imports_first():
    """`import tfadv.attacks.<module>` as the first tfadv import (no circular import through the
    lazy package), for every module of the package: one interpreter, tfadv unloaded in between."""
    folder = os.path.join(REPO_ROOT, "tfadv", "attacks")
    modules = sorted(f[:-3] for f in os.listdir(folder) if f.endswith(".py") and f[0] != "_")
    code = f"""
import importlib, sys
import tensorflow
for m in {modules!r}:
    for k in [k for k in sys.modules if k == "tfadv" or k.startswith("tfadv.")]:
        del sys.modules[k]
    try:
        importlib.import_module("tfadv.attacks." + m)
        print(m, "ok")
    except Exception as e:
        print(m, "failed:", type(e).__name__, str(e).splitlines()[0])
"""
    env = dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    lines = result.stdout.splitlines()
    assert len(lines) == len(modules), result.stderr[-2000:]
    assert all(line.endswith(" ok") for line in lines), [x for x in lines if "failed" in x]
