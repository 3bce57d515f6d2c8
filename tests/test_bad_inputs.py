"""The bad-input matrix: every user mistake on the command line gives one line, an exact exit code, and no change.

Each case builds a valid ``swig apply`` (or ``train``/``evaluate``/``data``) call on tiny files in a
temporary folder, breaks one thing, runs the real command line (:func:`swig_lib.cli.main`
in-process), and checks the exit code (2: wrong command line, 1: unusable file or folder), that
stderr is exactly one line ``swig <command>: error: ...`` naming the file (or option) and the fix,
and that no file in the folder was created, removed or changed. Fault injection: a write that
fails part-way leaves no partial set and the earlier outputs untouched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from _owndata import guide_sidecar, write_dataset
from _phantom import FakeDataset, make_subject, tiny_profile

from swig_lib.cli import main
from swig_lib.core.io import MAP_RANGES, save_nifti, sha256
from swig_lib.core.models import SwigResNet
from swig_lib.experiments.inference import OUTPUT_FILES, SIDECAR_FILE
from swig_lib.experiments.training.checkpoints import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from swig_lib.experiments.training.loop import train_variant


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny trained M12++ and M2++ (one epoch on the phantom), and a model without guides (as Acq5^R)."""
    out = tmp_path_factory.mktemp("models")
    dataset = FakeDataset(1, 1, 0, (32, 30, 2))
    paths = {v: train_variant(tiny_profile(), v, out, device="cpu", dataset=dataset, progress=False)
             for v in ("M12++", "M2++")}
    recon = SwigResNet((), True, [75.0, 1100.0, 130.0], width=4)
    paths["Acq5R"] = out / "checkpoints" / "Acq5R.pt"
    save_checkpoint(paths["Acq5R"], {"format": CHECKPOINT_FORMAT, "model_spec": recon.spec,
                                     "model_state": recon.state_dict(), "recon_key": "{}"})
    return paths


def _inputs(folder: Path) -> dict[str, Path]:
    """Valid inputs of ``swig apply`` in ``folder``: LR maps, guides and mask of a phantom."""
    subject = make_subject(3, shape=(30, 28, 3))
    volumes = {"pd": subject.q_l[0], "t1": subject.q_l[1], "t2": subject.q_l[2],
               "t1w": subject.guides["T1w"], "t2w": subject.guides["T2w"], "mask": subject.mask}
    return {name: save_nifti(folder / f"{name}.nii.gz", volume, np.diag([1.0, 1.0, 2.0, 1.0]))
            for name, volume in volumes.items()}


def _argv(model: Path, files: dict[str, Path], out: Path, *extra: str) -> list[str]:
    options = [x for name, path in files.items() for x in (f"--{name}", str(path))]
    return ["apply", "--model", str(model), "--device", "cpu", "--out", str(out), *options, *extra]


def snapshot(root: Path) -> dict[str, tuple]:
    """Every folder (by name) and file (by name, mtime and SHA-256) under ``root``."""
    return {
        str(path.relative_to(root)): ("folder",) if path.is_dir() else (path.stat().st_mtime_ns, sha256(path))
        for path in sorted(root.rglob("*"))
    }


def _rewrite(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> None:
    save_nifti(path, data, nib.load(path).affine if affine is None else affine)


def _data(path: Path) -> np.ndarray:
    return np.asarray(nib.load(path).dataobj, dtype=np.float32)


def _brain_voxel(files: dict[str, Path]) -> tuple[int, int, int]:
    return tuple(int(i) for i in np.argwhere(_data(files["mask"]) > 0)[0])


def _with(files: dict[str, Path], key: str, change: Callable[[np.ndarray], np.ndarray]) -> None:
    _rewrite(files[key], change(_data(files[key]).copy()))


def _set(voxel: tuple[int, int, int], value: float) -> Callable[[np.ndarray], np.ndarray]:
    def change(data: np.ndarray) -> np.ndarray:
        data[voxel] = value
        return data

    return change


def _checkpoint(tmp: Path, name: str, source: Path, edit: Callable[[dict], dict]) -> Path:
    """A copy of checkpoint ``source`` as ``tmp/name`` with its payload edited (checksum recomputed)."""
    path = tmp / name
    save_checkpoint(path, edit(load_checkpoint(source)))
    return path


def _flip_weight_bytes(tmp: Path, source: Path) -> Path:
    """``source`` with four bytes inside one weight tensor inverted: same size, valid zip, wrong weights."""
    raw = bytearray(source.read_bytes())
    tensor = load_checkpoint(source)["model_state"]["tail.weight"]
    start = bytes(raw).index(bytes(tensor.untyped_storage()))
    raw[start + 100 : start + 104] = bytes(b ^ 0xFF for b in raw[start + 100 : start + 104])
    path = tmp / "flipped.pt"
    path.write_bytes(bytes(raw))
    return path


def _pickle_checkpoint(tmp: Path) -> Path:
    class Exploit:
        def __reduce__(self) -> tuple:
            return (Path.write_text, (tmp / "pwned.txt", "code ran"))

    path = tmp / "evil.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "payload": Exploit()}, path)
    return path


def _implausible(tmp: Path, source: Path) -> Path:
    """A correctly checksummed model whose T1 output lies far above :data:`MAP_RANGES`."""

    def edit(payload: dict) -> dict:
        payload["model_state"]["tail.bias"][1] = 1e4  # softplus domain: T1 ≈ 1e4 x its training mean
        return payload

    return _checkpoint(tmp, "implausible.pt", source, edit)


Setup = Callable[[Path, dict, dict], "list[str] | None"]


def _seconds(key: str) -> Callable:
    return lambda tmp, files, models: _with(files, key, lambda d: d / 1000)


def _shift_guide(tmp: Path, files: dict, models: dict) -> None:
    shifted = np.diag([1.0, 1.0, 2.0, 1.0])
    shifted[0, 3] = 5.0
    _rewrite(files["t1w"], _data(files["t1w"]), shifted)


def _truncated(tmp: Path, files: dict, models: dict) -> list[str]:
    (tmp / "cut.pt").write_bytes(models["M12++"].read_bytes()[:300])
    return _argv(tmp / "cut.pt", files, tmp / "out")


def _old_format(tmp: Path, files: dict, models: dict) -> list[str]:
    torch.save({**load_checkpoint(models["M12++"]), "format": "swig-checkpoint-1"}, tmp / "old.pt")
    return _argv(tmp / "old.pt", files, tmp / "out")


def _foreign(tmp: Path, files: dict, models: dict) -> list[str]:
    torch.save({"state": torch.zeros(3)}, tmp / "other.pt")
    return _argv(tmp / "other.pt", files, tmp / "out")


def _linked_input(tmp: Path, files: dict, models: dict) -> list[str]:
    (tmp / "out").mkdir()
    (tmp / "out" / "m.nii.gz").symlink_to(files["mask"])
    return _argv(models["M12++"], {**files, "mask": tmp / "out" / "m.nii.gz"}, tmp / "out")


def _earlier_output(tmp: Path, files: dict, models: dict) -> None:
    (tmp / "out").mkdir()
    (tmp / "out" / "T2map.nii.gz").write_bytes(b"mine")


def _file_in_the_way(tmp: Path) -> Path:
    (tmp / "notes.txt").write_text("x")
    return tmp / "notes.txt"


def _finished_run(tmp: Path, files: dict, models: dict) -> list[str]:
    (tmp / "run" / "checkpoints").mkdir(parents=True)
    (tmp / "run" / "checkpoints" / "M12++.pt").write_bytes(b"trained")
    return _experiment("train", "--device", "cpu")(tmp, files, models)


def _apply(*extra: str, model: str = "M12++", drop: tuple[str, ...] = ()) -> Setup:
    """Setup: the default ``swig apply`` call with extra options, another model, or inputs left out."""

    def setup(tmp: Path, files: dict, models: dict) -> list[str]:
        return _argv(models[model], {k: v for k, v in files.items() if k not in drop}, tmp / "out", *extra)

    return setup


def _experiment(command: str, *extra: str) -> Setup:
    """Setup: ``swig <command>`` on the smoke profile with its results and data in the folder."""
    return lambda tmp, files, models: [command, "--profile", "smoke", "--out", str(tmp / "run"),
                                       "--data", str(tmp / "data"), *extra]


def _model(make: Callable[[Path, Path], Path], source: str = "M12++") -> Setup:
    """Setup: the default call with the model made by ``make(tmp, trained model)``."""
    return lambda tmp, files, models: _argv(make(tmp, models[source]), files, tmp / "out")


def _spec(name: str, **changes: object) -> Callable[[Path, Path], Path]:
    """A model whose recorded ``model_spec`` has ``changes`` (weights and checksum intact)."""
    return lambda tmp, source: _checkpoint(
        tmp, name, source, lambda p: {**p, "model_spec": {**p["model_spec"], **changes}})


def _sidecar(key: str, **changes: object) -> Setup:
    """Setup: a BIDS sidecar next to guide ``key`` (the paper's protocol, keys changed; None removes one)."""
    return lambda tmp, files, models: (files[key].parent / f"{key}.json").write_text(
        json.dumps(guide_sidecar({"t1w": "T1w", "t2w": "T2w"}[key], **changes))) and None


def _own_data(*extra: str, **description: object) -> Setup:
    """Setup: ``swig train --data`` on an own-data folder of three subjects (dataset file keys changed)."""

    def setup(tmp: Path, files: dict, models: dict) -> list[str]:
        write_dataset(tmp / "own", **description)
        return ["train", "--data", str(tmp / "own"), "--profile", "smoke", "--out", str(tmp / "run"), *extra]

    return setup


def _one_subject_folder(tmp: Path, files: dict, models: dict) -> list[str]:
    write_dataset(tmp / "own", n_subjects=1)
    return ["train", "--data", str(tmp / "own"), "--out", str(tmp / "run")]


def _no_dataset_file(tmp: Path, files: dict, models: dict) -> list[str]:
    argv = _one_subject_folder(tmp, files, models)
    (tmp / "own" / "swig_dataset.json").unlink()
    return argv


# Each case: setup(tmp, files, models) -> argv (None: the default call), exit code, substrings of the one line.
CASES: dict[str, tuple[Setup, int, tuple[str, ...]]] = {
    # -- the command line itself: exit 2 --
    "batch_size_negative": (
        _apply("--batch-size", "-1"), 2,
        ("argument --batch-size", "at least 1, got '-1'", "see `swig apply --help`")),
    "batch_size_zero": (_apply("--batch-size", "0"), 2, ("argument --batch-size", "at least 1, got '0'")),
    "device_unknown": (_apply("--device", "foo"), 2, ("--device foo: not a device", "use auto, cpu, cuda")),
    "device_cuda_absent": (
        _apply("--device", "cuda"), 2, ("--device cuda: CUDA is not available here", "use --device cpu or auto")),
    "device_not_supported": (_apply("--device", "meta"), 2, ("--device meta: not supported", "use auto, cpu")),
    "option_missing": (
        lambda tmp, files, models: [a for a in _argv(models["M12++"], files, tmp / "out")
                                    if a not in ("--t2", str(files["t2"]))], 2,
        ("the following arguments are required: --t2", "see `swig apply --help`")),
    "train_resume_and_overwrite": (
        _experiment("train", "--resume", "--overwrite"), 2,
        ("argument --overwrite: not allowed with argument --resume", "see `swig train --help`")),
    "train_device_cuda": (
        _experiment("train", "--device", "cuda"), 2, ("--device cuda: CUDA is not available", "--device cpu")),
    "data_workers_zero": (
        lambda tmp, files, models: ["data", "--root", str(tmp / "data"), "--workers", "0"], 2,
        ("argument --workers", "at least 1")),
    "adapt_zero": (_apply("--adapt", "0"), 2, ("argument --adapt", "at least 1, got '0'")),
    "adapt_lr_scale_above_one": (_apply("--adapt", "2", "--adapt-lr-scale", "2"), 2,
                                 ("argument --adapt-lr-scale", "must be a number in (0, 1], got '2'")),
    "adapt_and_from_scratch": (
        _apply("--adapt", "2", "--from-scratch", "2"), 2,
        ("argument --from-scratch: not allowed with argument --adapt",)),
    "contrasts_without_adaptation": (
        _apply("--contrasts", "c.nii.gz"), 2,
        ("--contrasts: only the data term of --adapt or --from-scratch reads LR contrasts", "leave --contrasts out")),
    "guide_given_twice": (
        _apply("--guide", "T2w", "x.nii.gz"), 2, ("--guide T2w: the guide T2w is given twice", "give it once")),
    "tolerance_negative": (
        _apply("--time-tolerance", "-0.1"), 2, ("argument --time-tolerance: must be a number of at least 0",)),
    "train_alpha_without_own_data": (
        _experiment("train", "--alpha", "3"), 2, ("--alpha: only for your own data", "swig_dataset.json")),
    "train_own_data_with_variant": (
        _own_data("--variant", "M2++"), 2, ("--variant: your own data trains one model, SWIG", "leave --variant out")),
    # -- a file or folder that cannot be used: exit 1 --
    "model_missing": (
        lambda tmp, files, models: _argv(tmp / "missing.pt", files, tmp / "out"), 1,
        ("missing.pt: no such file", "check the path")),
    "input_missing": (
        lambda tmp, files, models: _argv(models["M12++"], {**files, "pd": tmp / "in" / "absent.nii.gz"}, tmp / "out"),
        1, ("absent.nii.gz: no such file", "check the path")),
    "input_not_nifti": (
        lambda tmp, files, models: files["t2"].write_text("not an image") and None, 1,
        ("t2.nii.gz: not a readable NIfTI image", "convert it to .nii or .nii.gz")),
    "shape_differs": (
        lambda tmp, files, models: _rewrite(files["t1"], np.ones((30, 28, 4), np.float32)), 1,
        ("t1.nii.gz: shape (30, 28, 4) differs", "resample it")),
    "affine_differs": (_shift_guide, 1, ("t1w.nii.gz: its affine differs", "register and resample it")),
    "four_d": (
        lambda tmp, files, models: _rewrite(files["t2"], np.stack([_data(files["t2"])] * 2, axis=-1)), 1,
        ("t2.nii.gz: expected a 3-D volume", "pass one 3-D volume per file")),
    "nan_inside_mask": (
        lambda tmp, files, models: _with(files, "pd", _set(_brain_voxel(files), np.nan)), 1,
        ("pd.nii.gz: 1 non-finite voxel(s) (NaN or inf) inside the mask", "numpy.nan_to_num")),
    "nan_in_mask_file": (
        lambda tmp, files, models: _with(files, "mask", _set((0, 0, 0), np.nan)), 1,
        ("mask.nii.gz: 1 non-finite voxel(s)", "numpy.nan_to_num")),
    "inf_in_guide_inside_mask": (
        lambda tmp, files, models: _with(files, "t2w", _set(_brain_voxel(files), np.inf)), 1,
        ("t2w.nii.gz: 1 non-finite voxel(s) (NaN or inf) inside the mask", "numpy.nan_to_num")),
    "t1_in_seconds": (_seconds("t1"), 1, ("t1.nii.gz: T1 values look like seconds", "multiply the map by 1000")),
    "t2_in_seconds": (_seconds("t2"), 1, ("t2.nii.gz: T2 values look like seconds", "multiply the map by 1000")),
    "pd_negative": (
        lambda tmp, files, models: _with(files, "pd", _set(_brain_voxel(files), -5.0)), 1,
        ("pd.nii.gz: 1 voxel(s) inside the mask have PD < 0", "clip them at 0")),
    "t2_zero_inside_mask": (
        lambda tmp, files, models: _with(files, "t2", _set(_brain_voxel(files), 0.0)), 1,
        ("t2.nii.gz: 1 voxel(s) inside the mask have T2 <= 0 ms", "exclude them from the mask")),
    "mask_empty": (
        lambda tmp, files, models: _rewrite(files["mask"], np.zeros((30, 28, 3), np.float32)), 1,
        ("mask.nii.gz: empty mask", "pass the brain mask")),
    "guide_not_given": (
        _apply(model="M2++", drop=("t2w",)), 1, ("M2++.pt: trained with guide(s) ['T2w']", "pass --t2w")),
    "checkpoint_truncated": (
        _truncated, 1,
        ("cut.pt: damaged or not a torch file (PytorchStreamReader failed reading zip archive: failed finding "
         "central directory)", "Delete it and train again")),
    "checkpoint_weights_flipped": (
        _model(_flip_weight_bytes), 1,
        ("flipped.pt: damaged, its weights do not match their recorded checksum", "Delete it and train again")),
    "checkpoint_pickle": (
        lambda tmp, files, models: _argv(_pickle_checkpoint(tmp), files, tmp / "out"), 1,
        ("evil.pt: holds Python objects", "could run code", "Delete it")),
    "checkpoint_old_format": (
        _old_format, 1, ("old.pt: earlier format 'swig-checkpoint-1'", "swig train --overwrite")),
    "checkpoint_foreign": (_foreign, 1, ("other.pt: not a SWIG checkpoint", "Delete it")),
    "checkpoint_without_spec": (
        _model(lambda tmp, source: _checkpoint(
            tmp, "nospec.pt", source, lambda p: {k: v for k, v in p.items() if k != "model_spec"})), 1,
        ("nospec.pt: lacks model_spec", "train again")),
    "checkpoint_width_disagrees": (
        _model(_spec("wide.pt", width=8)), 1,
        ("wide.pt: its recorded model spec", "'width': 8", "does not fit its weights", "train the model again")),
    "checkpoint_guides_disagree": (
        _model(_spec("guides.pt", guides=["T1w", "T2w"]), "M2++"), 1,
        ("guides.pt: its recorded model spec", "'guides': ['T1w', 'T2w']", "does not fit its weights")),
    "not_a_swig_model": (
        _apply(model="Acq5R"), 1,
        ("Acq5R.pt: a model without guide inputs is not a SWIG model", "pass a SWIG checkpoint", "M12++.pt")),
    "guide_protocol_mismatch": (
        _sidecar("t2w", EchoTime=0.1), 1,
        ("t2w.json: EchoTime = 0.1 s differs from 0.146 s of the model ", "M12++.pt by more than 5 %",
         "or pass --accept-protocol-mismatch")),
    "guide_sidecar_field_missing": (
        _sidecar("t1w", InversionTime=None), 1,
        ("t1w.json: InversionTime is missing (needed by IR-SPGR)", "give InversionTime in seconds")),
    "guide_sidecar_not_json": (
        lambda tmp, files, models: (files["t1w"].parent / "t1w.json").write_text("{") and None, 1,
        ("t1w.json: cannot read a JSON sidecar", "give a BIDS JSON sidecar file")),
    "adapt_a_model_without_recipe": (
        lambda tmp, files, models: _argv(_checkpoint(tmp, "bare.pt", models["M12++"], lambda p: {
            k: v for k, v in p.items() if k != "profile"}), files, tmp / "out", "--adapt", "2"), 1,
        ("bare.pt: records no training settings", "adapt only models from `swig train`")),
    "train_own_data_without_dataset_file": (
        _no_dataset_file, 1, ("own: no swig_dataset.json", "write it next to the sub-* folders")),
    "train_own_data_noise_missing": (
        _own_data(NoiseLevel=None), 1,
        ("swig_dataset.json: NoiseLevel is missing", "give the noise standard deviation")),
    "train_own_data_one_subject": (
        _one_subject_folder, 1, ("own: 1 subject folder(s) sub-*", "training needs at least two")),
    "implausible_output": (
        _model(_implausible), 1,
        ("implausible.pt: ", "T1 value(s) inside the mask outside the physical range (from 1.1",
         f"allowed (0, {MAP_RANGES['T1'][1]:g}]", "nothing was written")),
    "out_holds_inputs": (
        lambda tmp, files, models: _argv(models["M12++"], files, tmp / "in"), 1,
        ("the output folder holds the input --pd", "choose another --out")),
    "out_holds_a_linked_input": (_linked_input, 1, ("holds the input --mask", "choose another --out")),
    "outputs_exist": (_earlier_output, 1, ("T2map.nii.gz: exists", "pass --overwrite", "or choose another --out")),
    "out_not_a_folder": (
        lambda tmp, files, models: _argv(models["M12++"], files, _file_in_the_way(tmp) / "sr"), 1,
        ("notes.txt is not a folder", "choose another --out")),
    "train_over_a_finished_run": (
        _finished_run, 1, ("M12++.pt: a training run exists", "pass --resume to continue it or --overwrite")),
    "train_resume_nothing": (
        _experiment("train", "--resume", "--device", "cpu"), 1, ("nothing to resume", "train without --resume")),
    "evaluate_untrained": (
        _experiment("evaluate", "--variants", "M12++", "--device", "cpu"), 1,
        ("M12++.pt: no trained model", "run `swig train --profile smoke")),
    "data_root_not_a_folder": (
        lambda tmp, files, models: ["data", "--root", str(_file_in_the_way(tmp) / "data")], 1,
        ("--data", "notes.txt is not a folder", "choose another --data")),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_gives_one_line_and_changes_nothing(case: str, tmp_path: Path, models: dict[str, Path],
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    setup, code, expected = CASES[case]
    if case in ("device_cuda_absent", "train_device_cuda") and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    files = _inputs(tmp_path / "in")
    argv = setup(tmp_path, files, models) or _argv(models["M12++"], files, tmp_path / "out")
    before = snapshot(tmp_path)
    capsys.readouterr()
    assert main(argv) == code
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"swig {argv[0]}: error: ") and out == ""
    for text in expected:
        assert text in lines[0], (text, lines[0])
    assert snapshot(tmp_path) == before


def test_an_unwritable_output_folder_is_refused_before_inference(tmp_path: Path, models: dict[str, Path],
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    if os.geteuid() == 0:
        pytest.skip("root may write anywhere")
    files = _inputs(tmp_path / "in")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    before = snapshot(tmp_path)
    assert main(_argv(models["M12++"], files, locked / "sr")) == 1
    assert capsys.readouterr().err == (f"swig apply: error: {locked / 'sr'}: cannot write the outputs there (no "
                                       f"permission to write in {locked}); choose another --out\n")
    assert snapshot(tmp_path) == before


def test_apply_writes_one_set_with_provenance(tmp_path: Path, models: dict[str, Path],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    files = _inputs(tmp_path / "in")
    out = tmp_path / "out"
    assert main(_argv(models["M12++"], files, out, "--batch-size", "2")) == 0
    assert capsys.readouterr().err == ""
    assert sorted(p.name for p in out.iterdir()) == sorted([*OUTPUT_FILES.values(), SIDECAR_FILE])
    sidecar = json.loads((out / SIDECAR_FILE).read_text())
    assert sidecar["model"]["sha256"] == sha256(models["M12++"])
    assert sidecar["model"]["weights_sha256"] == load_checkpoint(models["M12++"])["weights_sha256"]
    assert sidecar["model"]["guides"] == ["T1w", "T2w"]
    assert {k: v["sha256"] for k, v in sidecar["inputs"].items()} == {k: sha256(p) for k, p in files.items()}
    assert {k: v["sha256"] for k, v in sidecar["outputs"].items()} == {
        k: sha256(out / name) for k, name in OUTPUT_FILES.items()}
    assert sidecar["settings"] == {"batch_size": 2, "device": "cpu", "mask": "given"}
    assert sidecar["swig_lib"] == "0.1.0"
    first = snapshot(out)
    assert main(_argv(models["M12++"], files, out, "--batch-size", "2", "--overwrite")) == 0
    assert {k: v[1] for k, v in snapshot(out).items()} == {k: v[1] for k, v in first.items()}  # same bytes


def test_a_write_failing_part_way_leaves_no_partial_set(tmp_path: Path, models: dict[str, Path],
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    files = _inputs(tmp_path / "in")
    out = tmp_path / "out"
    assert main(_argv(models["M12++"], files, out)) == 0
    before = snapshot(tmp_path)
    save, calls = nib.save, []

    def fail_on_second_map(image: nib.Nifti1Image, filename: Path) -> None:
        calls.append(filename)
        if len(calls) == 2:
            Path(filename).write_bytes(b"half a map")
            raise OSError(28, "No space left on device", str(filename))
        save(image, filename)

    monkeypatch.setattr(nib, "save", fail_on_second_map)
    capsys.readouterr()
    assert main(_argv(models["M12++"], files, out, "--overwrite")) == 1
    err = capsys.readouterr().err
    assert err.startswith("swig apply: error: ") and err.count("\n") == 1
    assert err == (f"swig apply: error: {out / 'T1map.nii.gz'}: No space left on device; check the path, its "
                   "permissions and the free space\n")  # the destination, not the hidden temporary file
    assert snapshot(tmp_path) == before  # the earlier set untouched, no temporary file left
    calls.clear()
    assert main(_argv(models["M12++"], files, tmp_path / "new" / "sr")) == 1
    assert not (tmp_path / "new").exists()  # the folders it created are gone too
    assert len(calls) == 2


def test_nan_outside_the_mask_is_accepted_and_the_header_kept(tmp_path: Path, models: dict[str, Path],
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    files = _inputs(tmp_path / "in")
    for key in ("pd", "t1", "t2w"):
        _with(files, key, _set((0, 0, 0), np.nan))  # the background of a fit
    source = nib.load(files["pd"])
    source.header.set_sform(source.affine, code=4)
    source.header["descrip"] = b"vendor fit 2.1"
    nib.save(nib.Nifti1Image(np.asarray(source.dataobj), None, source.header), files["pd"])
    assert main(_argv(models["M12++"], files, tmp_path / "out")) == 0
    assert capsys.readouterr().err == ""
    for name in OUTPUT_FILES.values():
        image = nib.load(tmp_path / "out" / name)
        assert int(image.header["sform_code"]) == 4
        assert image.header["descrip"].tobytes().rstrip(b"\0") == b"vendor fit 2.1"
        assert np.isfinite(np.asarray(image.dataobj)).all()


def test_swapped_t1_and_t2_give_one_warning(tmp_path: Path, models: dict[str, Path],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    files = _inputs(tmp_path / "in")
    swapped = {**files, "t1": files["t2"], "t2": files["t1"]}
    main(_argv(models["M12++"], swapped, tmp_path / "out"))
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("swig apply: warning: T1 map ") and "look swapped" in lines[0]
    assert str(files["t2"]) in lines[0]


def test_debug_shows_the_exception(tmp_path: Path, models: dict[str, Path]) -> None:
    files = _inputs(tmp_path / "in")
    with pytest.raises(CheckpointError, match="earlier format"):
        torch.save({**load_checkpoint(models["M12++"]), "format": "swig-checkpoint-1"}, tmp_path / "old.pt")
        main(_argv(tmp_path / "old.pt", files, tmp_path / "out", "--debug"))


@pytest.mark.parametrize(("args", "code", "line"), [
    (["apply", "--batch-size", "0"], 2, "swig apply: error: argument --batch-size: must be an integer of at least 1, "
                                        "got '0'; see `swig apply --help`"),
    (["train", "--device", "nonsense"], 2, "swig train: error: --device nonsense: not a device; use auto, cpu, "
                                           "cuda, cuda:N or mps"),
])
def test_the_installed_command_prints_one_line(args: list[str], code: int, line: str) -> None:
    done = subprocess.run([sys.executable, "-m", "swig_lib.cli", *args], capture_output=True, text=True,
                          timeout=120, check=False)
    assert (done.returncode, done.stdout, done.stderr) == (code, "", line + "\n")


def test_checksum_of_a_checkpoint_is_over_its_weights_only(tmp_path: Path, models: dict[str, Path]) -> None:
    payload = load_checkpoint(models["M2++"])
    copy = _checkpoint(tmp_path, "copy.pt", models["M2++"], lambda p: {**p, "log": []})
    assert load_checkpoint(copy)["weights_sha256"] == payload["weights_sha256"]
    assert sha256(copy) != sha256(models["M2++"])


@pytest.mark.parametrize(("error", "code", "line"), [
    (ZeroDivisionError("float division by zero"), 1,
     "swig apply: error: unexpected ZeroDivisionError: float division by zero; rerun with --debug for the traceback "
     "and report it"),
    (KeyboardInterrupt(), 130, "swig apply: interrupted"),
])
def test_unexpected_failures_are_one_line_too(error: BaseException, code: int, line: str, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr("swig_lib.experiments.inference.apply_files", fail)
    argv = ["apply", "--model", "m.pt", "--pd", "p", "--t1", "a", "--t2", "b", "--out", str(tmp_path / "o")]
    assert main(argv) == code
    assert capsys.readouterr().err == line + "\n"
    with pytest.raises(type(error)):
        main([*argv, "--debug"])
