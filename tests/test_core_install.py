"""A core install (``pip install .``, no ``book`` extra) runs every command but ``reproduce``.

The test runs a fresh interpreter in which the book extra's packages cannot be imported (a
``sys.meta_path`` finder refuses them, as if they were not installed), imports every module of
the science core, the experiments and the command line, and runs ``swig --help``, ``--version``
and each non-book command's ``--help``; ``swig reproduce`` then fails with one line naming the
missing package and the extra to install.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

#: Top-level modules that only the ``book`` extra installs (with what they pull in).
BOOK_ONLY = ("nbformat", "papermill", "traitlets", "jupyter_book", "myst_nb", "sphinx", "ipykernel",
             "ipywidgets", "IPython", "jupyter_client", "jupyter_core", "nbclient", "jupyter_cache")

SCRIPT = textwrap.dedent(
    """
    import contextlib, importlib, importlib.abc, io, json, pkgutil, sys

    BLOCKED = set(sys.argv[1].split(","))

    class NotInstalled(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, NotInstalled())
    import swig_lib
    from swig_lib.core.io import UserError  # noqa: F401

    names = sorted(
        info.name for info in pkgutil.walk_packages(swig_lib.__path__, "swig_lib.")
        if not info.name.startswith("swig_lib.book") and not info.name.endswith("__main__")
    )
    for name in names:
        importlib.import_module(name)
    try:
        importlib.import_module("swig_lib.book.reproduce")
        guard_works = False
    except ModuleNotFoundError:
        guard_works = True

    from swig_lib.cli import COMMANDS, main

    codes = {}
    for argv in (["--help"], ["--version"], *([c, "--help"] for c in COMMANDS if c != "reproduce"),
                 ["reproduce", "--no-book"]):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            codes[" ".join(argv)] = [main(argv), out.getvalue(), err.getvalue()]
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    print(json.dumps({"modules": names, "guard_works": guard_works, "codes": codes, "loaded": loaded}))
    """
)


def test_core_install_runs_every_command_but_reproduce() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT, ",".join(BOOK_ONLY)], capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["guard_works"] and result["loaded"] == []
    modules = set(result["modules"])
    assert {"swig_lib.cli", "swig_lib.cli.apply", "swig_lib.core.io", "swig_lib.experiments.inference",
            "swig_lib.experiments.training.loop", "swig_lib.experiments.subjects.dataset"} <= modules
    codes = result["codes"]
    assert codes["--help"][0] == 0 and "apply" in codes["--help"][1]
    assert codes["--version"] == [0, "swig 0.1.0\n", ""]
    for command in ("data", "train", "evaluate", "apply"):
        code, out, err = codes[f"{command} --help"]
        assert (code, err) == (0, "") and out.startswith(f"usage: swig {command}")
    code, out, err = codes["reproduce --no-book"]
    assert code == 1 and out == ""
    assert err == ("swig reproduce: error: nbformat: not installed; `swig reproduce` needs the book extra: "
                   "pip install -e '.[book]' in the repository\n")
