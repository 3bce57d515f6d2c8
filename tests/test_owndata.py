"""Your own data: training on a folder, the guide protocol check of ``swig apply``, adaptation.

The tests write tiny own-data folders (:mod:`_owndata`: 24×24×4 phantoms with sidecars and the
dataset file), train on them with ``swig train --data``, apply the model with ``swig apply``, and
check the protocol refusals, the adaptation and the surrogate data term.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from _owndata import guide_sidecar, write_dataset
from _phantom import FakeDataset, make_subject, tiny_profile

from swig_lib.cli import main
from swig_lib.core.io import DataValidationError, sha256
from swig_lib.core.kspace import KSpaceTruncation
from swig_lib.core.losses import correlation_ratio_loss, data_consistency_loss, guide_loss
from swig_lib.core.models import receptive_radius
from swig_lib.core.physics import weighted_image
from swig_lib.core.protocols import GUIDE_PROTOCOLS, QMRIProtocol
from swig_lib.core.sequences import PRESETS, guide_signal
from swig_lib.experiments.config import load_profile
from swig_lib.experiments.inference import OUTPUT_FILES, SIDECAR_FILE
from swig_lib.experiments.owndata.folder import OwnDataset, synthesised_contrasts
from swig_lib.experiments.owndata.protocols import ProtocolMismatchError, ProtocolTolerance, protocol_difference
from swig_lib.experiments.subjects.dataset import acquire, lr_contrasts
from swig_lib.experiments.training.checkpoints import Acquisition, load_checkpoint, save_checkpoint
from swig_lib.experiments.training.loop import balanced_alpha, train_variant
from swig_lib.experiments.training.variants import GUIDE_ORDER
from swig_lib.experiments.training.windows import TrainingData, dilate, prepare_data

SMOKE = load_profile("smoke")


def _train(data: Path, out: Path, *extra: str) -> int:
    return main(["train", "--data", str(data), "--profile", "smoke", "--out", str(out), "--device", "cpu", *extra])


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """An own-data folder of three subjects (LR maps only) and the model ``swig train --data`` made of it."""
    root = tmp_path_factory.mktemp("own")
    files = write_dataset(root / "data")
    assert _train(root / "data", root / "run") == 0
    return {"data": root / "data", "files": files, "model": root / "run" / "checkpoints" / "SWIG.pt"}


def _apply(model: Path, files: dict[str, Path], out: Path, *extra: str) -> list[str]:
    options = [x for key in ("pd", "t1", "t2", "t1w", "t2w", "mask") for x in (f"--{key}", str(files[key]))]
    return ["apply", "--model", str(model), "--device", "cpu", "--out", str(out), *options, *extra]


def _guides_with(tmp: Path, files: dict[str, Path], name: str, **changes: object) -> dict[str, Path]:
    """``files`` with the guide ``name`` copied into ``tmp`` and its sidecar's keys changed (None: removed)."""
    tmp.mkdir(exist_ok=True)
    image = tmp / f"{name.lower()}.nii.gz"
    shutil.copy(files[name.lower()], image)
    (tmp / f"{name.lower()}.json").write_text(json.dumps(guide_sidecar(name, **changes)))
    return {**files, name.lower(): image}


# ---- the paper's protocols: bit for bit ---------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_presets_synthesise_the_paper_guides_bit_for_bit(dtype: torch.dtype) -> None:
    maps = torch.from_numpy(make_subject(0, (40, 36, 4)).q_l).to(dtype)
    q_hat = maps.permute(3, 0, 1, 2)
    mask = torch.from_numpy(make_subject(0, (40, 36, 4)).mask).permute(2, 0, 1)
    guides = {}
    for name in GUIDE_ORDER:
        old = weighted_image(GUIDE_PROTOCOLS[name], q_hat[:, 0], q_hat[:, 1], q_hat[:, 2])
        assert torch.equal(guide_signal(PRESETS[name], q_hat[:, 0], q_hat[:, 1], q_hat[:, 2]), old)
        guides[name] = old.flip(-1)
    reference = q_hat.new_zeros(())
    for name, w in guides.items():
        w_hat = weighted_image(GUIDE_PROTOCOLS[name], q_hat[:, 0], q_hat[:, 1], q_hat[:, 2])
        reference = reference + correlation_ratio_loss(w, w_hat, mask).mean()
    assert torch.equal(guide_loss(q_hat, guides, mask), reference)
    data = TrainingData(*[None] * 4, keep=0.5, sigma=0.1)
    assert list(data.guide_protocols) == list(GUIDE_ORDER) and data.qmri_protocol == QMRIProtocol()


def test_a_digital_checkpoint_records_the_paper_protocols(tmp_path: Path) -> None:
    path = train_variant(tiny_profile(), "M2++", tmp_path, device="cpu", dataset=FakeDataset(1, 1, 0, (32, 30, 2)),
                         progress=False)
    payload = load_checkpoint(path)
    assert Acquisition.of_checkpoint(payload) == Acquisition(0.5, 0.1, QMRIProtocol(), {"T2w": PRESETS["T2w"]})
    del payload["acquisition"]  # a checkpoint of before the record: the paper's protocols
    assert Acquisition.of_checkpoint(payload).guide_protocols == {"T2w": PRESETS["T2w"]}


# ---- the surrogate data term ------------------------------------------------------------------


def test_contrasts_synthesised_from_q_l_are_a_sound_surrogate_on_the_mask() -> None:
    """On a digital subject with the real fitter, M(Q_l) leads the data term where C_l does (mask only)."""
    subject = make_subject(0, (40, 36, 4))
    fitted = acquire(subject.q_h, subject.mask, subject.affine, 0.5, 0.1, 7)
    true = torch.from_numpy(lr_contrasts(subject.q_h, 0.5, 0.1, 7)).permute(3, 0, 1, 2).double()
    surrogate = torch.from_numpy(synthesised_contrasts(fitted.q_l, QMRIProtocol())).permute(3, 0, 1, 2).double()
    q_l, q_h = (torch.from_numpy(q).permute(3, 0, 1, 2).double() for q in (fitted.q_l, subject.q_h))
    mask = torch.from_numpy(subject.mask).permute(2, 0, 1)
    phi = KSpaceTruncation(0.5, 0.1).on_window((40, 36), (40, 36), dtype=torch.float64)

    def term(c_l: torch.Tensor, q: torch.Tensor, region: torch.Tensor) -> tuple[float, torch.Tensor]:
        q = q.clone().requires_grad_(True)
        loss = data_consistency_loss(q * mask[:, None], c_l, region, 0.1, phi)
        loss.backward()
        return float(loss.detach()), q.grad * mask[:, None]

    (_, g_true), (l_start, g_sur) = term(true, q_l, mask), term(surrogate, q_l, mask)
    cosine = float((g_true * g_sur).sum() / g_true.norm() / g_sur.norm())
    towards_truth = [float((g * (q_h - q_l)).sum()) for g in (g_true, g_sur)]
    assert cosine > 0.99  # 0.998
    assert towards_truth[0] < 0 and 0.8 < towards_truth[1] / towards_truth[0] <= 1.0  # 0.91
    assert term(surrogate, q_h, mask)[0] < l_start / 4  # it prefers Q_h to Q_l, by 6.5
    ring = dilate(mask, 2)  # with the trainer's dilated region, where Q_l holds nothing, it would not
    assert term(surrogate, q_h, ring)[0] > term(surrogate, q_l, ring)[0]


# ---- swig train --data ------------------------------------------------------------------------


def test_train_on_own_data_records_protocols_alpha_and_split(own: dict) -> None:
    payload = load_checkpoint(own["model"])
    assert Acquisition.of_checkpoint(payload) == Acquisition(0.5, 0.1, QMRIProtocol(),
                                                             {"T1w": PRESETS["T1w"], "T2w": PRESETS["T2w"]})
    assert payload["variant"]["name"] == "SWIG" and list(payload["variant"]["guides"]) == ["T1w", "T2w"]
    data_settings = payload["profile"]["data"]
    assert data_settings["split"] == {"train": ["sub-01", "sub-02"], "val": ["sub-03"]}
    assert data_settings["contrasts"] == "synthesised from the LR maps"
    dataset = OwnDataset.open(own["data"])
    profile = dataset.training_profile(SMOKE)
    assert payload["profile"]["train"]["dc_dilation"] == profile.train.dc_dilation == 0
    prepared = prepare_data(dataset, profile, receptive_radius(**SMOKE.model), progress=False)
    assert torch.equal(prepared.train.region, prepared.train.mask)  # the data term on the mask only
    assert payload["profile"]["train"]["alpha"] == balanced_alpha(prepared)[0]  # the α rule


def test_train_on_own_data_resumes_and_names_a_changed_setting(own: dict, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = own["model"].parents[1]
    assert _train(own["data"], out, "--resume") == 0
    assert "SWIG (alpha = " in capsys.readouterr().out
    before = sha256(own["model"])
    assert _train(own["data"], out, "--resume", "--alpha", "5") == 1
    err = capsys.readouterr().err.splitlines()[-1]  # after the progress bars of loading
    assert err.startswith(f"swig train: error: {out / 'checkpoints' / 'SWIG.last.pt'} was written with other "
                          "settings") and "train.alpha = " in err and ", 5.0 now" in err
    assert sha256(own["model"]) == before


def test_check_prints_what_training_uses(own: dict, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--data", str(own["data"]), "--check"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{own['data']}: 3 subjects, train sub-01, sub-02; validation sub-03"
    assert lines[2] == "data term: contrasts synthesised from the LR maps, on the brain mask"
    assert lines[3] == "guide T1w: IR-SPGR (tr 6.6, te 2.6, ti 450, flip 12, td 0; ms, degrees)"
    assert lines[-1] == "every image of the 3 subjects is usable"


def test_own_data_with_contrasts_only_fits_the_maps(tmp_path: Path) -> None:
    write_dataset(tmp_path / "data", maps=False, contrasts=True, ValidationSubjects=["sub-01"])
    dataset = OwnDataset.open(tmp_path / "data")
    assert not dataset.synthesised and dataset.split == {"train": ["sub-02", "sub-03"], "val": ["sub-01"]}
    acquired = dataset.acquired("sub-02")
    phantom = make_subject(1, (24, 24, 4))
    np.testing.assert_array_equal(acquired.lr_contrasts(), phantom.lr_contrasts())
    inside = acquired.mask
    assert (acquired.q_l[:, inside] > 0).all() and (acquired.q_l[:, ~inside] == 0).all()
    # The fit explains the contrasts: its own synthesis is within a few noise levels of them inside the brain.
    residual = synthesised_contrasts(acquired.q_l, QMRIProtocol()) - acquired.lr_contrasts()
    assert np.median(np.abs(residual[:, inside])) < 1.0
    profile = dataset.training_profile(SMOKE)
    assert profile.train.dc_dilation == SMOKE.train.dc_dilation  # given contrasts: the trainer's ring
    assert _train(tmp_path / "data", tmp_path / "run") == 0


def test_dataset_file_and_layout_errors_name_the_file(tmp_path: Path) -> None:
    files = write_dataset(tmp_path / "d", NoiseLevel=None)
    (tmp_path / "d" / "swig_dataset.json").write_text(json.dumps({"KSpaceFraction": 0.5}))
    with pytest.raises(DataValidationError) as error:
        OwnDataset.open(tmp_path / "d")
    assert str(error.value) == (f"{tmp_path / 'd' / 'swig_dataset.json'}: NoiseLevel is missing; give the noise "
                                "standard deviation of the LR contrasts in their units (a.u.)")
    (tmp_path / "d" / "swig_dataset.json").write_text(json.dumps({"KSpaceFraction": 0.5, "NoiseLevel": 0.1}))
    sidecar = files["sub-02"]["t2w"].with_name("sub-02_T2w.json")
    sidecar.write_text(json.dumps(guide_sidecar("T2w", EchoTime=0.1)))
    with pytest.raises(ProtocolMismatchError) as error:
        OwnDataset.open(tmp_path / "d")
    reference = files["sub-01"]["t2w"].with_name("sub-01_T2w.json")
    assert str(error.value) == (f"{sidecar}: EchoTime = 0.1 s differs from 0.146 s of {reference} by more than 5 %; "
                                "one model needs one protocol per guide: leave the subject out, or list the T2w "
                                "guides of one protocol only")
    sidecar.unlink()
    with pytest.raises(DataValidationError, match="sub-02_T2w.nii.gz: no sidecar sub-02_T2w.json; write the "
                                                  "guide's BIDS sidecar"):
        OwnDataset.open(tmp_path / "d")


def test_protocol_difference_tolerances() -> None:
    t2w = PRESETS["T2w"]
    assert protocol_difference(t2w, t2w, ProtocolTolerance(0.0, 0.0)) is None
    near = guide_sidecar("T2w", EchoTime=0.15, FlipAngle=158.5)
    given = type(t2w)("SE-alpha", tr=5211.0, te=150.0, flip=near["FlipAngle"])
    assert protocol_difference(given, t2w, ProtocolTolerance()) is None  # 2.7 % and 1.5 degrees
    assert protocol_difference(given, t2w, ProtocolTolerance(0.02, 2.0)).describe("M") == (
        "EchoTime = 0.15 s differs from 0.146 s of M by more than 2 %")
    assert protocol_difference(given, t2w, ProtocolTolerance(0.05, 1.0)).describe("M") == (
        "FlipAngle = 158.5 degrees differs from 160 degrees of M by more than 1 degrees")
    assert protocol_difference(PRESETS["T1w"], t2w, ProtocolTolerance()).describe("M") == (
        "sequence type = IR-SPGR differs from SE-alpha of M")


# ---- swig apply: the protocol check ------------------------------------------------------------


def test_apply_checks_the_guides_sidecars(own: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = own["files"]["sub-03"]
    assert main(_apply(own["model"], files, tmp_path / "sr")) == 0
    assert capsys.readouterr().err == ""
    assert sorted(p.name for p in (tmp_path / "sr").iterdir()) == sorted([*OUTPUT_FILES.values(), SIDECAR_FILE])
    record = json.loads((tmp_path / "sr" / SIDECAR_FILE).read_text())
    assert {name: g["check"] for name, g in record["guide_protocols"].items()} == {
        "T1w": "within tolerance", "T2w": "within tolerance"}
    sidecar = files["t2w"].with_name("sub-03_T2w.json")
    assert record["guide_protocols"]["T2w"]["sidecar"] == {"path": str(sidecar), "sha256": sha256(sidecar)}
    assert record["adaptation"] is None


def test_a_protocol_mismatch_is_refused_in_one_line_unless_accepted(own: dict, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    files = _guides_with(tmp_path / "in", own["files"]["sub-03"], "T2w", EchoTime=0.1)
    sidecar = tmp_path / "in" / "t2w.json"
    assert main(_apply(own["model"], files, tmp_path / "sr")) == 1
    assert capsys.readouterr().err == (
        f"swig apply: error: {sidecar}: EchoTime = 0.1 s differs from 0.146 s of the model {own['model']} by more "
        "than 5 %; use a T2w guide acquired with the model's protocol, or pass --accept-protocol-mismatch to use it "
        "anyway (with --adapt N to fine-tune the model on it)\n")
    assert not (tmp_path / "sr").exists()
    assert main(_apply(own["model"], files, tmp_path / "sr", "--accept-protocol-mismatch")) == 0
    assert capsys.readouterr().err == (
        f"swig apply: warning: {sidecar}: mismatch accepted: EchoTime = 0.1 s differs from 0.146 s of the model by "
        "more than 5 %; the network sees a T2w contrast it was not trained on\n")
    record = json.loads((tmp_path / "sr" / SIDECAR_FILE).read_text())["guide_protocols"]["T2w"]
    assert record["check"].startswith("mismatch accepted") and record["protocol"]["te"] == 100.0
    assert main(_apply(own["model"], files, tmp_path / "wide", "--time-tolerance", "0.5")) == 0
    assert capsys.readouterr().err == ""


def test_the_flip_angle_tolerance_is_a_setting(own: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = _guides_with(tmp_path / "in", own["files"]["sub-03"], "T1w", FlipAngle=15)
    assert main(_apply(own["model"], files, tmp_path / "sr")) == 1
    assert capsys.readouterr().err == (
        f"swig apply: error: {tmp_path / 'in' / 't1w.json'}: FlipAngle = 15 degrees differs from 12 degrees of the "
        f"model {own['model']} by more than 2 degrees; use a T1w guide acquired with the model's protocol, or pass "
        "--accept-protocol-mismatch to use it anyway (with --adapt N to fine-tune the model on it)\n")
    assert main(_apply(own["model"], files, tmp_path / "sr", "--flip-tolerance", "3")) == 0


def test_a_missing_sidecar_field_is_named(own: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = _guides_with(tmp_path / "in", own["files"]["sub-03"], "T1w", EchoTime=None)
    assert main(_apply(own["model"], files, tmp_path / "sr", "--accept-protocol-mismatch")) == 1
    assert capsys.readouterr().err == (f"swig apply: error: {tmp_path / 'in' / 't1w.json'}: EchoTime is missing "
                                       "(needed by IR-SPGR); give EchoTime in seconds, as BIDS does\n")


def test_a_checkpoint_without_protocols_has_the_papers(own: dict, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    payload = load_checkpoint(train_variant(tiny_profile(), "M12++", tmp_path / "run", device="cpu",
                                            dataset=FakeDataset(1, 1, 0, (32, 30, 2)), progress=False))
    del payload["acquisition"]
    save_checkpoint(tmp_path / "old.pt", payload)
    files = own["files"]["sub-03"]  # sidecars of the paper's protocols
    assert main(_apply(tmp_path / "old.pt", files, tmp_path / "sr")) == 0
    files = _guides_with(tmp_path / "in", files, "T1w", InversionTime=0.9)
    assert main(_apply(tmp_path / "old.pt", files, tmp_path / "sr2")) == 1
    assert "t1w.json: InversionTime = 0.9 s differs from 0.45 s of the model" in capsys.readouterr().err


# ---- swig apply --adapt / --from-scratch -------------------------------------------------------


def _maps(folder: Path) -> dict[str, str]:
    return {name: sha256(folder / name) for name in OUTPUT_FILES.values()}


def test_adaptation_lowers_the_loss_and_is_deterministic(own: dict, tmp_path: Path) -> None:
    files = own["files"]["sub-03"]
    assert main(_apply(own["model"], files, tmp_path / "plain")) == 0
    for run in ("a", "b"):
        assert main(_apply(own["model"], files, tmp_path / run, "--adapt", "40", "--seed", "3")) == 0
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == sorted([*OUTPUT_FILES.values(), SIDECAR_FILE])
    assert _maps(tmp_path / "a") == _maps(tmp_path / "b") != _maps(tmp_path / "plain")
    assert (tmp_path / "a" / SIDECAR_FILE).read_bytes() == (tmp_path / "b" / SIDECAR_FILE).read_bytes()
    record = json.loads((tmp_path / "a" / SIDECAR_FILE).read_text())["adaptation"]
    assert (record["mode"], record["steps"], record["seed"], record["slices"]) == ("adapt", 40, 3, 4)
    assert record["data_term"] == "contrasts synthesised from the LR maps, on the brain mask"
    assert record["alpha"] == load_checkpoint(own["model"])["profile"]["train"]["alpha"]
    # fine-tuning runs at a tenth of the training's peak learning rate (AdaptSettings.lr_scale)
    assert record["lr"] == pytest.approx(0.1 * load_checkpoint(own["model"])["profile"]["train"]["lr"])
    assert record["loss_after"]["loss_total"] < record["loss_before"]["loss_total"]
    assert main(_apply(own["model"], files, tmp_path / "c", "--adapt", "40", "--seed", "4")) == 0
    assert _maps(tmp_path / "c") != _maps(tmp_path / "a")


def test_from_scratch_trains_on_the_subject_alone(own: dict, tmp_path: Path) -> None:
    assert main(_apply(own["model"], own["files"]["sub-03"], tmp_path / "s", "--from-scratch", "40")) == 0
    record = json.loads((tmp_path / "s" / SIDECAR_FILE).read_text())["adaptation"]
    assert record["mode"] == "from scratch"
    assert record["lr"] == load_checkpoint(own["model"])["profile"]["train"]["lr"]
    assert record["loss_after"]["loss_total"] < record["loss_before"]["loss_total"]


def test_adaptation_reads_given_contrasts(tmp_path: Path) -> None:
    files = write_dataset(tmp_path / "data", contrasts=True)
    assert _train(tmp_path / "data", tmp_path / "run") == 0
    model = tmp_path / "run" / "checkpoints" / "SWIG.pt"
    subject = files["sub-03"]
    argv = _apply(model, subject, tmp_path / "sr", "--adapt", "40", "--contrasts", str(subject["contrasts"]))
    assert main(argv) == 0
    record = json.loads((tmp_path / "sr" / SIDECAR_FILE).read_text())
    assert record["adaptation"]["data_term"] == f"LR contrasts {subject['contrasts']}"
    assert record["adaptation"]["dc_dilation"] == SMOKE.train.dc_dilation
    assert record["inputs"]["contrasts"]["sha256"] == sha256(subject["contrasts"])
    assert record["adaptation"]["loss_after"]["loss_total"] < record["adaptation"]["loss_before"]["loss_total"]


def test_any_registered_guide_trains_and_applies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A FLAIR guide: synthesised in L_h with its own signal model, given to ``swig apply`` as --guide FLAIR."""
    files = write_dataset(tmp_path / "data", Guides=["T1w", "FLAIR"])
    dataset = OwnDataset.open(tmp_path / "data")
    assert dataset.guide_protocols == {"T1w": PRESETS["T1w"], "FLAIR": PRESETS["FLAIR"]}
    assert _train(tmp_path / "data", tmp_path / "run") == 0
    model = tmp_path / "run" / "checkpoints" / "SWIG.pt"
    assert Acquisition.of_checkpoint(load_checkpoint(model)).guide_protocols == dataset.guide_protocols
    subject = files["sub-03"]
    base = [x for key in ("pd", "t1", "t2", "t1w", "mask") for x in (f"--{key}", str(subject[key]))]
    argv = ["apply", "--model", str(model), "--device", "cpu", "--out", str(tmp_path / "sr"), *base]
    capsys.readouterr()
    assert main(argv) == 1
    assert capsys.readouterr().err == (f"swig apply: error: model {model}: trained with guide(s) ['T1w', 'FLAIR']; "
                                       "pass --guide FLAIR FILE\n")
    assert main([*argv, "--guide", "FLAIR", str(subject["flair"]), "--adapt", "2"]) == 0
    record = json.loads((tmp_path / "sr" / SIDECAR_FILE).read_text())
    assert record["guide_protocols"]["FLAIR"]["check"] == "within tolerance"
    assert record["inputs"]["flair"]["sha256"] == sha256(subject["flair"])
