"""Inference on volumes, ``swig evaluate`` on a toy dataset, and ``swig apply`` on NIfTI files."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from _phantom import FakeDataset, make_subject, tiny_profile

from swig_lib.cli import main
from swig_lib.core.io import DataValidationError, save_nifti
from swig_lib.core.models import SwigResNet, zscore_guide
from swig_lib.experiments.evaluation.evaluate import evaluate
from swig_lib.experiments.inference import (
    OUTPUT_FILES,
    apply_files,
    load_model,
    predict_volume,
)
from swig_lib.experiments.training.checkpoints import CheckpointError
from swig_lib.experiments.training.loop import train_variant

PROFILE = tiny_profile(variants=("M12++", "M1++"))


def _trained_like_model(guides=("T1w", "T2w"), use_ql=True) -> SwigResNet:
    model = SwigResNet(list(guides), use_ql, [75.0, 1100.0, 130.0], width=4)
    torch.manual_seed(0)
    for p in model.tail.parameters():
        p.data.normal_(0.0, 0.02)
    return model.eval()


def test_predict_volume_equals_whole_slice_inference() -> None:
    """The crop (brain + receptive radius) gives the whole slice's result: a 40x36 brain on 90x84."""
    subject = make_subject(0, shape=(40, 36, 3))
    pad = ((30, 20), (40, 8), (0, 0))
    subject.q_l = np.pad(subject.q_l, ((0, 0), *pad))
    subject.mask = np.pad(subject.mask, pad)
    subject.guides = {g: np.pad(v, pad) for g, v in subject.guides.items()}
    model = _trained_like_model()
    pred = predict_volume(model, subject.q_l, subject.guides, subject.mask, batch_size=2)
    mask_t = torch.from_numpy(subject.mask)
    guides = torch.stack(
        [zscore_guide(torch.from_numpy(subject.guides[g]), mask_t) for g in ("T1w", "T2w")]
    )
    with torch.no_grad():
        whole = (
            model(
                torch.from_numpy(subject.q_l).permute(3, 0, 1, 2),
                guides.permute(3, 0, 1, 2),
                mask_t.permute(2, 0, 1),
            )
            .permute(1, 2, 3, 0)
            .numpy()
        )
    assert pred.shape == subject.q_l.shape and pred.dtype == np.float32
    np.testing.assert_allclose(pred, whole, rtol=1e-4, atol=1e-3)
    assert (pred[:, ~subject.mask] == 0).all() and (pred[:, subject.mask] > 0).all()


def test_predict_volume_slices_and_input_checks() -> None:
    subject = make_subject(1, shape=(40, 36, 4))
    model = _trained_like_model(guides=("T2w",))
    pred = predict_volume(
        model, subject.q_l, {"T2w": subject.guides["T2w"]}, subject.mask, slices=np.array([1, 3])
    )
    assert (pred[..., [0, 2]] == 0).all() and (pred[..., [1, 3]] > 0).any()
    with pytest.raises(ValueError, match="T2w"):
        predict_volume(model, subject.q_l, {"T1w": subject.guides["T1w"]}, subject.mask)
    with pytest.raises(ValueError, match="Q_l"):
        predict_volume(model, None, subject.guides, subject.mask)
    blind = _trained_like_model(use_ql=False)
    assert (predict_volume(blind, None, subject.guides, subject.mask)[:, subject.mask] > 0).all()


def test_evaluate_writes_tables(tmp_path) -> None:
    dataset = FakeDataset(2, 1, 2, (40, 36, 3))
    for name in PROFILE.eval.variants:
        train_variant(PROFILE, name, tmp_path, device="cpu", dataset=dataset, progress=False)
    table = evaluate(PROFILE, tmp_path, dataset=dataset, progress=False)
    assert set(table["model"]) == {"Q_l", "M12++", "M1++"} and set(table["region"]) == {
        "brain",
        "interior",
    }
    assert len(table) == 3 * 2 * 3 * 2  # models x subjects x maps x regions
    metrics = tmp_path / "metrics"
    for name in (
        "per_subject.csv",
        "summary.csv",
        "ranking_brain.csv",
        "ranking_interior.csv",
        "table3_brain.csv",
    ):
        assert (metrics / name).is_file(), name
    ranking = pd.read_csv(metrics / "table3_brain.csv", index_col=[0, 1])
    assert list(ranking.columns) == ["M12++", "M1++"] and len(ranking) == 7  # 6 metric rows + total
    with pytest.raises(FileNotFoundError, match="M12--"):
        evaluate(PROFILE, tmp_path, variants=["M12--"], dataset=dataset, progress=False)


def test_load_model_round_trip(tmp_path) -> None:
    dataset = FakeDataset(1, 1, 0, (32, 30, 2))
    path = train_variant(PROFILE, "M2++", tmp_path, device="cpu", dataset=dataset, progress=False)
    model = load_model(path)
    assert model.guides == ["T2w"] and model.use_ql and not model.training


# ---- swig apply on NIfTI files ----------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny trained M12++ and M2++ (one epoch on the toy dataset)."""
    out = tmp_path_factory.mktemp("apply_models")
    dataset = FakeDataset(1, 1, 0, (32, 30, 2))
    return {
        v: train_variant(PROFILE, v, out, device="cpu", dataset=dataset, progress=False)
        for v in ("M12++", "M2++")
    }


def _write_inputs(folder, affine, t1_scale: float = 1.0, guide_affine=None) -> dict:
    subject = make_subject(3, shape=(30, 28, 3))
    files = {}
    for name, volume in (
        ("pd", subject.q_l[0]),
        ("t1", subject.q_l[1] * t1_scale),
        ("t2", subject.q_l[2]),
        ("t1w", subject.guides["T1w"]),
        ("t2w", subject.guides["T2w"]),
        ("mask", subject.mask),
    ):
        aff = guide_affine if guide_affine is not None and name in ("t1w", "t2w") else affine
        files[name] = save_nifti(folder / f"{name}.nii.gz", volume, aff)
    return files


def test_apply_keeps_affine_and_shape(tmp_path, trained) -> None:
    affine = np.array([[1.0, 0, 0, -15], [0, 1.0, 0, -14], [0, 0, 2.0, 3], [0, 0, 0, 1]])
    files = _write_inputs(tmp_path, affine)
    argv = [
        "apply",
        "--model",
        str(trained["M12++"]),
        "--out",
        str(tmp_path / "sr"),
        "--device",
        "cpu",
        *[x for k, v in files.items() for x in (f"--{k}", str(v))],
    ]
    assert main(argv) == 0
    pd_in = nib.load(files["pd"])
    for name in OUTPUT_FILES.values():
        out = nib.load(tmp_path / "sr" / name)
        np.testing.assert_allclose(out.affine, affine)
        assert out.shape == pd_in.shape
    mask = np.asarray(nib.load(files["mask"]).dataobj) > 0
    t1 = np.asarray(nib.load(tmp_path / "sr" / "T1map.nii.gz").dataobj)
    assert (t1[mask] > 0).all() and (t1[~mask] == 0).all()


def test_apply_restores_a_non_canonical_orientation(tmp_path, trained) -> None:
    canonical = np.diag([1.0, 1.0, 2.0, 1.0])
    flipped = np.array(
        [[-1.0, 0, 0, 29], [0, 1.0, 0, 0], [0, 0, 2.0, 0], [0, 0, 0, 1]]
    )  # same grid, x reversed
    a = apply_files(
        trained["M12++"], out=tmp_path / "a", **_write_inputs(tmp_path / "in_a", canonical)
    )
    subject_files = _write_inputs(tmp_path / "in_b", canonical)
    flipped_files = {}
    for name, path in subject_files.items():
        data = np.asarray(nib.load(path).dataobj)[::-1]
        flipped_files[name] = save_nifti(tmp_path / "in_b" / f"flip_{name}.nii.gz", data, flipped)
    b = apply_files(trained["M12++"], out=tmp_path / "b", **flipped_files)
    out_b = nib.load(b["T2"])
    np.testing.assert_allclose(out_b.affine, flipped)
    np.testing.assert_allclose(
        np.asarray(out_b.dataobj)[::-1], np.asarray(nib.load(a["T2"]).dataobj), rtol=1e-5, atol=1e-4
    )


def test_apply_rejects_bad_inputs(tmp_path, trained) -> None:
    files = _write_inputs(tmp_path / "seconds", np.eye(4), t1_scale=1e-3)
    with pytest.raises(DataValidationError, match="t1.nii.gz.*seconds"):
        apply_files(trained["M12++"], out=tmp_path / "x", **files)
    shifted = np.eye(4)
    shifted[0, 3] = 5.0
    files = _write_inputs(tmp_path / "grid", np.eye(4), guide_affine=shifted)
    with pytest.raises(DataValidationError, match="T1w guide.*affine differs"):
        apply_files(trained["M12++"], out=tmp_path / "x", **files)
    files = _write_inputs(tmp_path / "ok", np.eye(4))
    without_t2w = {k: v for k, v in files.items() if k != "t2w"}
    with pytest.raises(DataValidationError, match="--t2w"):
        apply_files(trained["M2++"], out=tmp_path / "x", **without_t2w)
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(trained["M2++"].read_bytes()[:100])
    with pytest.raises(CheckpointError, match="damaged.pt"):
        apply_files(damaged, out=tmp_path / "x", **files)
    assert not (tmp_path / "x").exists()  # nothing written on failure
    # A model that needs only T2w ignores a missing T1w.
    written = apply_files(
        trained["M2++"], out=tmp_path / "t2only", **{k: v for k, v in files.items() if k != "t1w"}
    )
    assert set(written) == {"PD", "T1", "T2"}
