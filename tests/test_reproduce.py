"""Tests of the one-command regeneration (swig_lib.book.reproduce), the notebook helpers and the book.

The execution tests run tiny notebooks with papermill (a few seconds each); the book test builds
the real book sources in a temporary folder (about ten seconds).
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from swig_lib import cli
from swig_lib.book import notebook, reproduce
from swig_lib.cli import reproduce as reproduce_command
from swig_lib.experiments.config import load_profile

REPO = Path(__file__).resolve().parents[1]


def _write(path: Path, cells: list) -> Path:
    """Write a notebook of ``cells`` with the python3 kernelspec to ``path``."""
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def _params_cell() -> nbformat.NotebookNode:
    """A parameters cell with the five conventional names."""
    return new_code_cell(notebook.parameters_source(), metadata={"tags": ["parameters"]})


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    """A minimal repository: ``_toc.yml`` and an empty ``notebooks/`` folder."""
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: intro\n")
    return tmp_path


def test_stamps_follow_parameters_sources_and_upstream(tmp_path: Path) -> None:
    first = _write(tmp_path / "00_a.ipynb", [_params_cell(), new_code_cell("x = 1")])
    second = _write(tmp_path / "01_b.ipynb", [_params_cell(), new_code_cell("y = 2")])
    params = {"profile": "smoke", "seed": 0, "data_dir": "data", "results_dir": "results", "device": "auto"}
    base = reproduce.step_stamps([first, second], params, package="pkg")
    assert base == reproduce.step_stamps([first, second], params, package="pkg")

    changed_param = reproduce.step_stamps([first, second], {**params, "seed": 1}, package="pkg")
    assert all(changed_param[name] != base[name] for name in base)
    assert reproduce.step_stamps([first, second], params, package="pkg2")["00_a"] != base["00_a"]

    nb = nbformat.read(second, as_version=4)
    nb.cells[1].outputs = [new_output("stream", name="stdout", text="noise")]
    nb.cells[1].execution_count = 7
    nbformat.write(nb, second)
    assert reproduce.step_stamps([first, second], params, package="pkg") == base

    nb.cells[1].source = "y = 3"
    nbformat.write(nb, second)
    edited_second = reproduce.step_stamps([first, second], params, package="pkg")
    assert edited_second["00_a"] == base["00_a"] and edited_second["01_b"] != base["01_b"]

    nb = nbformat.read(first, as_version=4)
    nb.cells[1].metadata["tags"] = ["remove-input"]
    nbformat.write(nb, first)
    edited_first = reproduce.step_stamps([first, second], params, package="pkg")
    assert edited_first["00_a"] != base["00_a"] and edited_first["01_b"] != edited_second["01_b"]


def test_package_fingerprint_covers_sources_and_profiles(tmp_path: Path) -> None:
    (tmp_path / "mod.py").write_text("A = 1\n")
    (tmp_path / "profiles.toml").write_text("[smoke]\nseed = 0\n")
    (tmp_path / "__pycache__").mkdir()
    before = reproduce.package_fingerprint(tmp_path)
    (tmp_path / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"\0")
    assert reproduce.package_fingerprint(tmp_path) == before
    (tmp_path / "profiles.toml").write_text("[smoke]\nseed = 1\n")
    assert reproduce.package_fingerprint(tmp_path) != before


def test_select_notebooks_by_name_or_number(tmp_path: Path) -> None:
    paths = [tmp_path / "00_environment.ipynb", tmp_path / "01_data_synthesis.ipynb"]
    assert reproduce.select_notebooks(paths, None) == {"00_environment", "01_data_synthesis"}
    assert reproduce.select_notebooks(paths, ["01"]) == {"01_data_synthesis"}
    assert reproduce.select_notebooks(paths, ["notebooks/00_environment.ipynb"]) == {"00_environment"}
    with pytest.raises(reproduce.ReproduceError, match="02_training"):
        reproduce.select_notebooks(paths, ["02_training"])


def test_failing_notebook_names_notebook_cell_and_error(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(
        repo / "notebooks" / "00_fails.ipynb",
        [
            new_markdown_cell("# Fails"),
            _params_cell(),
            new_code_cell("x = 1"),
            new_code_cell("y = x / 0\nprint(y)"),
        ],
    )
    status = reproduce.reproduce("smoke", root=repo, build_book=False, progress=False)
    assert status == 1
    err = capsys.readouterr().err
    assert "00_fails.ipynb" in err
    assert "cell 3 ('y = x / 0')" in err
    assert "ZeroDivisionError: division by zero" in err
    executed = repo / "results" / "smoke" / "executed"
    assert (executed / "00_fails.failed.ipynb").is_file()
    assert not (executed / "00_fails.ipynb").exists()
    provenance = json.loads((repo / "results" / "smoke" / "provenance.json").read_text())
    assert provenance["status"] == "failed"
    assert provenance["notebooks"]["00_fails"]["status"] == "failed"


def test_run_caches_forces_and_writes_provenance(
    repo: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pin the package hash: swig_lib sources edited during the test must not invalidate the cache.
    monkeypatch.setattr(reproduce, "package_fingerprint", lambda *args, **kwargs: "pinned")
    _write(
        repo / "notebooks" / "00_ok.ipynb",
        [_params_cell(), new_code_cell("print(profile, seed, device)")],
    )
    executed = repo / "results" / "smoke" / "executed" / "00_ok.ipynb"
    provenance_path = repo / "results" / "smoke" / "provenance.json"

    assert reproduce.reproduce("smoke", root=repo, build_book=False, progress=False, seed=3) == 0
    nb = nbformat.read(executed, as_version=4)
    assert "injected-parameters" in nb.cells[1].metadata["tags"]
    assert "smoke 3 auto" in nb.cells[2].outputs[0]["text"]
    record = nb.metadata[reproduce.METADATA_KEY]
    provenance = json.loads(provenance_path.read_text())
    assert provenance["status"] == "ok"
    assert provenance["parameters"] == {
        "profile": "smoke",
        "seed": 3,
        "data_dir": "data",
        "results_dir": "results",
        "device": "auto",
    }
    step = provenance["notebooks"]["00_ok"]
    assert step["status"] == "executed" and step["stamp"] == record["stamp"] and step["duration_s"] > 0
    assert step["executed"] == os.path.join("results", "smoke", "executed", "00_ok.ipynb")
    assert {"python", "torch", "numpy", "swig_lib"} <= set(provenance["versions"])
    assert "commit" in provenance["git"] and provenance["device"].startswith("cpu")
    assert not list(provenance_path.parent.glob(".*.tmp"))

    mtime = executed.stat().st_mtime_ns
    assert reproduce.reproduce("smoke", root=repo, build_book=False, progress=False, seed=3) == 0
    assert executed.stat().st_mtime_ns == mtime
    assert json.loads(provenance_path.read_text())["notebooks"]["00_ok"]["status"] == "cached"
    assert "up to date, skipped" in capsys.readouterr().out

    assert reproduce.reproduce("smoke", root=repo, build_book=False, progress=False, seed=3, force=True) == 0
    assert executed.stat().st_mtime_ns != mtime
    assert json.loads(provenance_path.read_text())["notebooks"]["00_ok"]["status"] == "executed"


def test_the_injected_seed_defaults_to_the_profiles(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reproduce, "package_fingerprint", lambda *args, **kwargs: "pinned")
    monkeypatch.setattr(reproduce, "load_profile", lambda name: load_profile(name, {"seed": 7}))
    _write(repo / "notebooks" / "00_ok.ipynb", [_params_cell(), new_code_cell("print(profile, seed, device)")])
    assert reproduce.reproduce("smoke", root=repo, build_book=False, progress=False) == 0
    nb = nbformat.read(repo / "results" / "smoke" / "executed" / "00_ok.ipynb", as_version=4)
    assert "smoke 7 auto" in nb.cells[2].outputs[0]["text"]


def test_the_seed_parameter_is_the_training_seed_of_the_notebooks() -> None:
    """Notebooks 02-06 load the profile with the injected seed; notebook 01 (the data) does not."""
    seeded = 'load_profile(profile, {"seed": seed})'
    for path in sorted((REPO / "notebooks").glob("0[1-6]_*.ipynb")):
        code = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
        if path.name.startswith("01_"):
            assert "load_profile" not in code and "does not enter the data" in code
        else:
            assert code.count("load_profile(") == 1 and seeded in code, path.name


def test_provenance_is_written_before_each_step(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reproduce, "package_fingerprint", lambda *args, **kwargs: "pinned")
    _write(repo / "notebooks" / "00_first.ipynb", [_params_cell(), new_code_cell("x = 1")])
    _write(
        repo / "notebooks" / "01_reads.ipynb",
        [
            _params_cell(),
            new_code_cell(
                "from swig_lib.book.reproduce import run_times\n"
                "rows = run_times(results_dir, profile, before='01_reads')\n"
                "print([(r['notebook'], r['status'], r['duration_s'] > 0) for r in rows])"
            ),
        ],
    )
    assert reproduce.reproduce("smoke", root=repo, build_book=False, progress=False) == 0
    nb = nbformat.read(repo / "results" / "smoke" / "executed" / "01_reads.ipynb", as_version=4)
    assert "[('00_first', 'executed', True)]" in nb.cells[2].outputs[0]["text"]
    rows = reproduce.run_times(repo / "results", "smoke")
    assert [row["notebook"] for row in rows] == ["00_first", "01_reads"]
    assert reproduce.run_times(repo / "results", "quick") == []


def test_invalid_arguments_return_2(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert reproduce.reproduce("nonsense", root=repo, build_book=False) == 2
    assert reproduce.reproduce("smoke", root=repo, only=["07"], build_book=False) == 2
    assert "unknown profile" in capsys.readouterr().err


def test_cli_registers_reproduce() -> None:
    args = cli.build_parser().parse_args(["reproduce", "--profile", "smoke", "--only", "00", "--no-book"])
    assert args.run is reproduce_command.run
    assert (args.profile, args.only, args.no_book, args.force) == ("smoke", ["00"], True, False)


def test_python3_kernel_runs_this_interpreter() -> None:
    reproduce.check_kernel()


def test_repository_notebooks_follow_conventions() -> None:
    paths = reproduce.discover_notebooks(REPO / "notebooks")
    assert paths, "no notebooks/NN_name.ipynb found"
    for path in paths:
        assert notebook.check_notebook(nbformat.read(path, as_version=4), path.stem) == []


def test_new_notebook_passes_its_own_check() -> None:
    nb = notebook.new_notebook("07_demo", "Demo", "A demo.", [new_code_cell("pass")])
    nbformat.validate(nb)
    assert notebook.check_notebook(nb, "07_demo") == []
    nb.cells[1].source = "print('no colab cell')"
    assert any("Colab" in problem for problem in notebook.check_notebook(nb, "07_demo"))


def test_optional_parameters_follow_the_conventional_ones_and_default_to_none() -> None:
    nb = notebook.new_notebook("07_demo", "Demo", "A demo.", [new_code_cell("pass")])
    nb.cells[2].source += "\nuser_data = None"
    assert notebook.check_notebook(nb, "07_demo") == []
    nb.cells[2].source += "\nuser_flair = {'ti': 2500}"
    assert any("default to None" in p for p in notebook.check_notebook(nb, "07_demo"))
    nb.cells[2].source = "user_data = None\n" + notebook.parameters_source()
    assert any("first" in p for p in notebook.check_notebook(nb, "07_demo"))


def test_glue_value_prints_without_myst_nb(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "myst_nb", None)  # makes "from myst_nb import glue" fail
    notebook.glue_value("ssim", 0.912345, ".3f")
    assert capsys.readouterr().out == "ssim = 0.912\n"


def test_glue_all_glues_every_entry_and_show_closes_the_figure(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import matplotlib.pyplot as plt

    monkeypatch.setitem(sys.modules, "myst_nb", None)
    notebook.glue_all({"ssim": (0.912345, ".3f"), "winner": ("M12++", None)})
    assert capsys.readouterr().out == "ssim = 0.912\nwinner = M12++\n"
    figure = plt.figure()
    notebook.show(figure)
    assert not plt.fignum_exists(figure.number)


def _jupyter_book(source: Path, profile: str) -> subprocess.CompletedProcess[str]:
    """Build the book at ``source`` with -W for ``profile``."""
    env = {**os.environ, "SWIG_PROFILE": profile}
    return subprocess.run(
        [reproduce._jupyter_book(), "build", str(source), "-W", "-q"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )


def test_book_builds_offline_from_executed_copies(tmp_path: Path) -> None:
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(REPO / name, tmp_path / name)
    shutil.copytree(REPO / "book", tmp_path / "book", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "notebooks", tmp_path / "notebooks", ignore=shutil.ignore_patterns(".*"))
    html = tmp_path / "_build" / "html"

    # Preview: nothing executed yet; pages show the sources with a note, pastes are left out.
    done = _jupyter_book(tmp_path, "smoke")
    assert done.returncode == 0, done.stdout + done.stderr
    page = (html / "notebooks" / "00_environment.html").read_text()
    assert "has not been executed for profile" in page

    # An executed copy (fake outputs: the glued values) replaces the source on the page.
    nb = nbformat.read(tmp_path / "notebooks" / "00_environment.ipynb", as_version=4)
    glue_cell = next(cell for cell in nb.cells if "glue_value(" in cell.source)
    glue_cell.outputs = [
        new_output(
            "display_data",
            data={"application/papermill.record/text/plain": repr(value)},
            metadata={"scrapbook": {"name": key, "mime_prefix": "application/papermill.record/"}},
        )
        for key, value in {"profile": "smoke", "device": "cpu (test)", "torch_version": "9.9.9"}.items()
    ]
    executed = tmp_path / "results" / "smoke" / "executed" / "00_environment.ipynb"
    executed.parent.mkdir(parents=True)
    nbformat.write(nb, executed)
    done = _jupyter_book(tmp_path, "smoke")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "has not been executed" not in (html / "notebooks" / "00_environment.html").read_text()
    intro = (html / "book" / "intro.html").read_text()
    assert "9.9.9" in intro and "cpu (test)" in intro
    assert (html / "index.html").is_file()
    method = (html / "book" / "method.html").read_text()
    assert "_static/mathjax/tex-chtml.js" in method and "cdn.jsdelivr" not in method
    assert (html / "_static" / "mathjax" / "tex-chtml.js").is_file()


def test_sync_notebooks_follows_repo_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copy(REPO / "notebooks" / "00_environment.ipynb", tmp_path / "00_environment.ipynb")
    monkeypatch.setattr(notebook, "REPO_URL", "https://github.com/someone/fork")
    assert notebook.sync_notebooks(tmp_path) == [tmp_path / "00_environment.ipynb"]
    nb = nbformat.read(tmp_path / "00_environment.ipynb", as_version=4)
    assert "someone/fork" in nb.cells[0].source and "someone/fork" in nb.cells[1].source
    assert notebook.check_notebook(nb, "00_environment") == []
    assert notebook.sync_notebooks(tmp_path) == []


def _resolve(target: str) -> object:
    """Import the object that a dotted path such as ``swig_lib.core.physics.flair`` names."""
    parts = target.split(".")
    for split in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[split:]:
            obj = getattr(obj, attribute)
        return obj
    raise ModuleNotFoundError(target)


def test_book_code_references_exist() -> None:
    """Every {py:func}/{py:class}/{py:mod} target named in the prose exists in swig_lib."""
    role = re.compile(r"\{py:(?:func|class|mod|meth|data)\}`~?([^`]+)`")
    targets = {m for page in (REPO / "book").glob("*.md") for m in role.findall(page.read_text())}
    assert targets
    missing = []
    for target in sorted(targets):
        try:
            _resolve(target)
        except (ImportError, AttributeError):
            missing.append(target)
    assert not missing, f"the book names objects that swig_lib lacks: {missing}"


def test_git_state_ignores_rewritten_results(tmp_path: Path) -> None:
    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "table.csv").write_text("a\n1\n")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    assert notebook.git_state(tmp_path)["dirty"] is False
    (tmp_path / "results" / "table.csv").write_text("a\n2\n")  # a run rewrote its output
    assert notebook.git_state(tmp_path / "results")["dirty"] is False
    (tmp_path / "code.py").write_text("x = 2\n")
    state = notebook.git_state(tmp_path / "results")
    assert state["dirty"] is True and len(state["commit"]) == 40
