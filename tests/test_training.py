"""Training: variants of Table I, windows and slices, checkpoints, exact resume, clear errors."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from _phantom import FakeDataset, tiny_profile

from swig_lib.core.models import SwigResNet
from swig_lib.experiments.config import load_profile
from swig_lib.experiments.training.checkpoints import (
    CHECKPOINT_FORMAT,
    LOG_COLUMNS,
    CheckpointError,
    checkpoint_paths,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
    setting_differences,
    weights_checksum,
)
from swig_lib.experiments.training.loop import (
    balanced_alpha,
    batch_loss,
    crop_phi,
    train_variant,
)
from swig_lib.experiments.training.variants import VARIANTS
from swig_lib.experiments.training.windows import (
    dilate,
    prepare_data,
    select_slices,
    window_indices,
    window_size,
)

PROFILE = tiny_profile(seed=3, epochs=2)


@pytest.fixture(scope="module")
def data():
    return prepare_data(FakeDataset(2, 1, 0, (28, 26, 2)), PROFILE, margin=15, progress=False)


def test_variants_follow_table_1() -> None:
    table = {
        name: (v.use_ql, v.data_consistency, "T1w" in v.guides, "T2w" in v.guides)
        for name, v in VARIANTS.items()
    }
    assert table == {
        "M12++": (True, True, True, True),
        "M2++": (True, True, False, True),
        "M1++": (True, True, True, False),
        "M12-+": (False, True, True, True),
        "M12--": (False, False, True, True),
        "M12++a0": (True, True, True, True),
        "M12++dr": (True, True, True, True),
    }
    assert [n for n, v in VARIANTS.items() if v.randomised] == ["M12++dr"]
    assert VARIANTS["M12++a0"].resolved_alpha(4000.0) == 0.0
    assert VARIANTS["M12++"].resolved_alpha(4000.0) == 4000.0


def test_profiles_have_training_sections() -> None:
    for name in ("smoke", "quick", "paper"):
        profile = load_profile(name)
        assert set(PROFILE["train"]) <= set(profile["train"]) and set(PROFILE["model"]) <= set(
            profile["model"]
        )
        assert set(profile["eval"]["variants"]) <= set(VARIANTS)
    assert load_profile("paper")["train"]["lr"] == 1e-5  # the paper's learning rate


def test_windows_slices_and_dilation() -> None:
    mask = np.zeros((20, 16, 5), dtype=bool)
    mask[1:7, 10:15, 1:4] = True
    mask[2:5, 11:13, 0] = True
    assert window_size([mask], margin=2) == (10, 9)
    assert window_size([mask], margin=10) == (20, 16)  # capped at the grid
    rows, cols = window_indices(mask, (10, 9))
    assert set(range(1, 7)) <= set(rows) and set(range(10, 15)) <= set(cols)
    assert (cols == (np.arange(8, 17) % 16)).all()  # wraps around the field of view
    assert select_slices(mask, 0.0, 1).tolist() == [0, 1, 2, 3]
    assert select_slices(mask, 0.5, 1).tolist() == [1, 2, 3]
    assert select_slices(mask, 0.0, 2).tolist() == [0, 2]
    point = torch.zeros(1, 7, 7, dtype=torch.bool)
    point[0, 3, 3] = True
    assert dilate(point, 2).sum() == 25 and dilate(point, 0).sum() == 1


def test_prepared_data_is_consistent(data) -> None:
    assert len(data.train) == 4 and len(data.val) == 2
    assert data.train.c_l.shape[1] == 12 and data.train.guides.shape[1] == 2
    assert (data.train.region | ~data.train.mask).all()  # the region contains the mask
    assert data.keep == 0.5 and data.sigma == 0.1 and all(s > 0 for s in data.q_scale)


def _states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_continues_exactly(tmp_path, data) -> None:
    straight = train_variant(
        PROFILE, "M12++", tmp_path / "straight", device="cpu", data=data, progress=False
    )

    class Interrupt(Exception):
        pass

    def stop_after_first(epoch: int) -> None:
        if epoch == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        train_variant(
            PROFILE,
            "M12++",
            tmp_path / "resumed",
            device="cpu",
            data=data,
            progress=False,
            on_epoch_end=stop_after_first,
        )
    assert load_checkpoint(checkpoint_paths(tmp_path / "resumed", "M12++")[1])["epoch"] == 1
    resumed = train_variant(
        PROFILE, "M12++", tmp_path / "resumed", resume=True, device="cpu", data=data, progress=False
    )

    a, b = (
        load_checkpoint(checkpoint_paths(tmp_path / "straight", "M12++")[1]),
        load_checkpoint(checkpoint_paths(tmp_path / "resumed", "M12++")[1]),
    )
    assert a["epoch"] == b["epoch"] == 2
    assert _states_equal(a["model_state"], b["model_state"])
    assert [r["loss_total"] for r in a["log"]] == [r["loss_total"] for r in b["log"]]
    assert straight.name == resumed.name == "M12++.pt"

    log = pd.read_csv(tmp_path / "resumed" / "logs" / "M12++.csv")
    assert tuple(log.columns) == LOG_COLUMNS and len(log) == 4
    assert (log[["loss_lr", "loss_guide", "loss_total"]] > 0).all().all()
    val = log[log["split"] == "val"]
    best = load_checkpoint(straight)
    assert best["epoch"] == int(
        val.loc[val["loss_total"].idxmin(), "epoch"]
    )  # selected on the val loss


def test_resume_refuses_other_settings(tmp_path, data) -> None:
    train_variant(PROFILE, "M1++", tmp_path, device="cpu", data=data, progress=False)
    other = replace(PROFILE, train=replace(PROFILE.train, lr=5e-4))
    with pytest.raises(CheckpointError, match="other settings") as err:
        train_variant(other, "M1++", tmp_path, resume=True, device="cpu", data=data, progress=False)
    assert "(train.lr = 0.001 there, 0.0005 now)" in str(err.value)


def test_setting_differences_name_each_setting() -> None:
    recorded = {"seed": 1, "train": {"lr": 1e-3, "alpha": 4000.0}, "model": {"width": 4}}
    current = {"seed": 1, "train": {"lr": 1e-3, "alpha": 3000.0}, "model": {"width": 4, "n_blocks": 5}}
    assert setting_differences(recorded, current) == [
        ("model.n_blocks", "<absent>", 5),
        ("train.alpha", 4000.0, 3000.0),
    ]
    assert setting_differences(recorded, recorded) == []


def test_every_variant_trains_and_reloads(tmp_path, data) -> None:
    profile = replace(PROFILE, train=replace(PROFILE.train, epochs=1))
    for name in ("M12-+", "M12--", "M12++a0"):
        path = train_variant(profile, name, tmp_path, device="cpu", data=data, progress=False)
        payload = load_checkpoint(path)
        model = model_from_checkpoint(payload)
        assert model.use_ql == VARIANTS[name].use_ql and model.guides == list(VARIANTS[name].guides)
        assert torch.allclose(model.q_scale, torch.tensor(data.q_scale, dtype=torch.float32))
    log = pd.read_csv(tmp_path / "logs" / "M12++a0.csv")
    assert (log["loss_total"] == log["loss_lr"]).all()  # α = 0: the guide term is only logged


def test_damaged_checkpoint_gives_clear_error(tmp_path) -> None:
    truncated = tmp_path / "M12++.pt"
    torch.save({"format": "swig-checkpoint-1", "weights": torch.zeros(1000)}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(CheckpointError, match=r"M12\+\+\.pt.*damaged.*Delete"):
        load_checkpoint(truncated)
    garbage = tmp_path / "garbage.pt"
    garbage.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="garbage.pt"):
        load_checkpoint(garbage)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match="not a SWIG checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")


def _tiny_checkpoint(path, **overrides) -> dict:
    model = SwigResNet(["T2w"], True, [75.0, 1100.0, 130.0], width=4)
    payload = {"format": CHECKPOINT_FORMAT, "model_spec": model.spec, "model_state": model.state_dict(),
               **overrides}
    save_checkpoint(path, payload)
    return payload


def test_weights_checksum_detects_any_change() -> None:
    state = SwigResNet(["T1w", "T2w"], True, [75.0, 1100.0, 130.0], width=4).state_dict()
    reference = weights_checksum(state)
    assert weights_checksum(dict(reversed(list(state.items())))) == reference  # independent of key order
    changed = {name: tensor.clone(memory_format=torch.contiguous_format) for name, tensor in state.items()}
    changed["tail.weight"].view(-1)[:1].view(torch.int32).bitwise_xor_(1)  # lowest bit of one float
    assert weights_checksum(changed) != reference
    renamed = {("x" + name if i == 0 else name): t for i, (name, t) in enumerate(state.items())}
    assert weights_checksum(renamed) != reference


def test_checkpoint_integrity_is_verified(tmp_path) -> None:
    path = tmp_path / "M2++.pt"
    payload = _tiny_checkpoint(path)
    loaded = load_checkpoint(path)
    assert loaded["weights_sha256"] == weights_checksum(payload["model_state"])
    raw = bytearray(path.read_bytes())
    weights = bytes(payload["model_state"]["head.0.weight"].untyped_storage())
    start = bytes(raw).index(weights)
    raw[start + 8 : start + 12] = bytes(b ^ 0x5A for b in raw[start + 8 : start + 12])
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(bytes(raw))  # same size, one weight changed
    assert damaged.stat().st_size == path.stat().st_size
    with pytest.raises(CheckpointError, match=r"damaged.pt: damaged, its weights do not match their recorded checksum"):
        load_checkpoint(damaged)

    old = tmp_path / "old.pt"
    torch.save({**loaded, "format": "swig-checkpoint-1"}, old)
    with pytest.raises(CheckpointError, match=r"old.pt: earlier format 'swig-checkpoint-1'.*train it again"):
        load_checkpoint(old)
    unchecked = tmp_path / "unchecked.pt"
    torch.save({k: v for k, v in loaded.items() if k != "weights_sha256"}, unchecked)
    with pytest.raises(CheckpointError, match="unchecked.pt: lacks weights_sha256"):
        load_checkpoint(unchecked)
    nospec = tmp_path / "nospec.pt"
    torch.save({k: v for k, v in loaded.items() if k != "model_spec"}, nospec)
    with pytest.raises(CheckpointError, match="nospec.pt: lacks model_spec"):
        load_checkpoint(nospec)


def test_spec_that_does_not_fit_the_weights_is_refused(tmp_path) -> None:
    payload = _tiny_checkpoint(tmp_path / "a.pt")
    wider = {**payload, "model_spec": {**payload["model_spec"], "width": 8}}
    with pytest.raises(CheckpointError, match=r"a.pt: its recorded model spec .*'width': 8.* does not fit its "
                       r"weights \(weights head.0.weight have shape \(4, 4, 3, 3\), the spec needs \(8, 4, 3, 3\)\)"):
        model_from_checkpoint(wider, source=tmp_path / "a.pt")
    more_guides = {**payload, "model_spec": {**payload["model_spec"], "guides": ["T1w", "T2w"]}}
    with pytest.raises(CheckpointError, match=r"'guides': \['T1w', 'T2w'\].*head.0.weight have shape \(4, 4, 3, 3\)"):
        model_from_checkpoint(more_guides, source="b.pt")
    unknown = {**payload, "model_spec": {**payload["model_spec"], "depth": 3}}
    with pytest.raises(CheckpointError, match="c.pt: unusable model_spec"):
        model_from_checkpoint(unknown, source="c.pt")


def test_pickled_objects_in_a_checkpoint_are_refused_unexecuted(tmp_path) -> None:
    marker = tmp_path / "executed"

    class Payload:
        def __reduce__(self):
            return (marker.write_text, ("pwned",))

    evil = tmp_path / "evil.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "x": Payload()}, evil)
    with pytest.raises(CheckpointError, match="evil.pt: holds Python objects .* could run code"):
        load_checkpoint(evil)
    assert not marker.exists()


def test_select_slices_edge_cases() -> None:
    mask = np.zeros((4, 4, 9), dtype=bool)
    mask[1:3, 1:3, 4] = True
    assert select_slices(mask, 0.0, 1).tolist() == [4]
    assert select_slices(mask, 0.0, 3).tolist() == [4]
    mask[1:3, 1:3, 2:8] = True
    assert select_slices(mask, 0.0, 3).tolist() == [2, 5]  # contains the middle slice (5)
    with pytest.raises(ValueError, match="stride"):
        select_slices(mask, 0.0, 0)


def test_balanced_alpha_makes_the_terms_start_equal(data) -> None:
    """α = L_l(Q_l)/L_h(Q_l): the untrained model (which returns Q_l) starts with L_l = α·L_h."""
    alpha, l_data, l_guide = balanced_alpha(data, batch_size=3)
    assert alpha == pytest.approx(l_data / l_guide) and l_data > 0 and l_guide > 0
    from swig_lib.core.models import SwigResNet

    model = SwigResNet(["T1w", "T2w"], True, data.q_scale, width=4).eval()
    with torch.no_grad():
        terms = batch_loss(
            model,
            data.train.batch(torch.arange(len(data.train)), torch.device("cpu")),
            VARIANTS["M12++"],
            alpha,
            crop_phi(data),
            data.sigma,
        )
    assert float(terms.data) == pytest.approx(float(alpha * terms.guide), rel=0.02)
