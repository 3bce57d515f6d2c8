import pytest
import torch
from _phantom import KEEP, FakeDataset, tiny_profile

from swig_lib.core.kspace import truncate_kspace
from swig_lib.core.models import receptive_radius
from swig_lib.experiments.arms.q2mri import masked_ssim, q2mri_model, q2mri_terms
from swig_lib.experiments.arms.supervised import (
    LabelledSlices,
    labelled_data,
    mse_terms,
    predict,
    scaled_mse,
    supervised_model,
    train_with_labels,
)
from swig_lib.experiments.training.windows import prepare_data


@pytest.fixture(scope="module")
def prepared():
    dataset = FakeDataset(n_train=2, n_val=1, n_test=0)
    profile = tiny_profile(epochs=3)
    data = prepare_data(dataset, profile, receptive_radius(**profile["model"]), progress=False)
    train, val = labelled_data(dataset, profile, data)
    return profile, data, train, val


def test_labels_are_cropped_and_sliced_like_the_prepared_data(prepared):
    _, data, train, val = prepared
    assert train.q_h.shape == data.train.q_l.shape and val.q_h.shape == data.val.q_l.shape
    # the phantom's Q_h is non-zero exactly in the brain, and its Q_l is Φ(Q_h) clamped at 1 and masked
    assert torch.equal(train.q_h[:, 0] > 0, data.train.mask)
    assert train.q_h.shape[-2:] == (40, 36)  # the window is the whole grid: Φ on it is exact
    lowpass = truncate_kspace(train.q_h.double(), KEEP).float()
    inside = data.train.mask[:, None].expand_as(lowpass) & (lowpass > 1.0)
    torch.testing.assert_close(data.train.q_l[inside], lowpass[inside], rtol=1e-5, atol=1e-3)
    with pytest.raises(ValueError, match="do not match the slices"):
        LabelledSlices(data.train, train.q_h[:1])


def test_scaled_mse_and_q2mri_loss_have_their_closed_forms(prepared):
    _, data, train, _ = prepared
    scale = torch.tensor(data.q_scale)
    mask = data.train.mask
    shifted = train.q_h + 0.2 * scale.view(1, 3, 1, 1) * mask[:, None]
    assert scaled_mse(shifted, train.q_h, mask, scale).item() == pytest.approx(0.04, rel=1e-5)
    terms = q2mri_terms(train.q_h, train.q_h, mask, scale)
    assert terms.total.item() == pytest.approx(0.0, abs=1e-6) and masked_ssim(train.q_h, train.q_h, mask, scale) == 1
    shifted_terms = q2mri_terms(shifted, train.q_h, mask, scale, lam=5.0)
    assert shifted_terms.data.item() == pytest.approx(0.2, rel=1e-5)
    assert 0 < shifted_terms.guide.item() < 1
    assert shifted_terms.total.item() == pytest.approx(0.2 + 5.0 * shifted_terms.guide.item(), rel=1e-6)


@pytest.mark.parametrize("arm", ["supervised", "q2mri"])
def test_training_lowers_the_label_loss_and_keeps_the_best_validation_epoch(prepared, arm):
    profile, data, train, val = prepared
    torch.manual_seed(0)
    if arm == "supervised":
        model, loss = supervised_model(data.q_scale, profile["model"]), mse_terms
    else:
        model, loss = q2mri_model(data.q_scale, profile["model"]), q2mri_terms
    assert model.use_ql == (arm == "supervised") and model.guides == ["T1w", "T2w"]
    cfg = {**profile["train"], "lr": 3e-3}
    trained, log = train_with_labels(model, train, val, cfg, loss=loss, seed=0)
    train_losses = [row["loss_total"] for row in log if row["split"] == "train"]
    val_losses = [row["loss_total"] for row in log if row["split"] == "val"]
    assert len(train_losses) == 3 and train_losses[-1] < train_losses[0]
    with torch.no_grad():
        q_hat = predict(trained, val.slices)
        final = loss(q_hat, val.q_h, val.slices.mask, trained.q_scale).total.item()
    assert q_hat.shape == val.q_h.shape and not trained.training
    assert final == pytest.approx(min(val_losses), rel=1e-5)
