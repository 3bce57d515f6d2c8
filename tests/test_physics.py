"""Closed forms, limits and gradients of the signal equations (eq. 13-18)."""

import math

import pytest
import torch

from swig_lib.core import physics
from swig_lib.core.protocols import (
    GUIDE_PROTOCOLS,
    FlairProtocol,
    IRSPGRProtocol,
    QMRIProtocol,
    SpinEchoProtocol,
)

E = math.exp(1.0)
# White matter, grey matter, CSF at 1.5 T (PD a.u., T1 ms, T2 ms): used for contrast ordering only.
WM, GM, CSF = (70.0, 600.0, 80.0), (80.0, 1000.0, 100.0), (100.0, 4000.0, 2000.0)


def tissues(dtype=torch.float64):
    pd, t1, t2 = (torch.tensor(v, dtype=dtype) for v in zip(WM, GM, CSF))
    return pd, t1, t2


def test_saturation_recovery_closed_form():
    pd, t1 = torch.tensor([80.0]), torch.tensor([900.0])
    assert physics.saturation_recovery(pd, t1, 900.0).item() == pytest.approx(80 * (1 - 1 / E))
    assert physics.saturation_recovery(pd, t1, 1e6).item() == pytest.approx(80.0)
    assert physics.saturation_recovery(pd, t1, 0.0).item() == 0.0


def test_spin_echo_closed_form():
    pd, t2 = torch.tensor([80.0]), torch.tensor([90.0])
    assert physics.spin_echo(pd, t2, 90.0).item() == pytest.approx(80 / E)
    assert physics.spin_echo(pd, t2, 0.0).item() == pytest.approx(80.0)


def test_ir_spgr_reduces_to_inversion_recovery():
    # flip 0 and no T2 decay: M_z,eq = PD, so W1 = PD·(1 − 2e^(−TP/T1)), the classic IR curve.
    pd, t1, t2 = (torch.tensor([v], dtype=torch.float64) for v in (1.0, 800.0, 1e9))
    for tp in (100.0, 554.5, 2000.0):
        w = physics.ir_spgr(pd, t1, t2, tr=6.6, te=0.0, tp=tp, td=0.0, flip=0.0)
        assert w.item() == pytest.approx(1 - 2 * math.exp(-tp / 800.0), rel=1e-9)
    # A long delay before the inversion lets M_z,eq recover fully: same IR curve for any flip.
    w = physics.ir_spgr(pd, t1, t2, tr=6.6, te=0.0, tp=300.0, td=1e6, flip=12.0)
    assert w.item() == pytest.approx(1 - 2 * math.exp(-300 / 800.0), rel=1e-9)


def test_ir_spgr_matches_written_out_formula():
    pd, t1, t2 = tissues()
    p = IRSPGRProtocol(td=200.0)
    e1 = torch.exp(-p.tr / t1)
    mz = pd * (1 - e1) / (1 - math.cos(math.radians(p.flip)) * e1) * torch.exp(-p.te / t2)
    before = mz * torch.exp(-p.td / t1) + pd * (1 - torch.exp(-p.td / t1))
    expected = -before * torch.exp(-p.tp / t1) + pd * (1 - torch.exp(-p.tp / t1))
    got = physics.ir_spgr(pd, t1, t2, p.tr, p.te, p.tp, p.td, p.flip)
    torch.testing.assert_close(got, expected)


def test_spgr_steady_state_is_ernst_equation_at_90_degrees():
    pd, t1, t2 = torch.tensor([1.0]), torch.tensor([1000.0]), torch.tensor([1e9])
    got = physics.spgr_steady_state(pd, t1, t2, tr=10.0, te=0.0, flip=90.0)
    assert got.item() == pytest.approx(1 - math.exp(-10 / 1000.0))


def test_se_guide_limits():
    pd, t1, t2 = tissues()
    # 90° refocusing: sin 90° = 1, cos 90° = 0 → the textbook PD·(1 − e^(−(TR−TE)/T1))·e^(−TE/T2).
    got = physics.se_guide(pd, t1, t2, tr=5000.0, te=100.0, flip=90.0)
    expected = pd * (1 - torch.exp(-4900.0 / t1)) * torch.exp(-100.0 / t2)
    torch.testing.assert_close(got, expected)
    # A perfect 180° refocusing pulse makes eq. 17 vanish (sin 0° = 0).
    assert torch.allclose(physics.se_guide(pd, t1, t2, flip=180.0), torch.zeros(3, dtype=torch.float64))


def test_guides_have_textbook_tissue_ordering():
    pd, t1, t2 = tissues()
    t1w = physics.weighted_image(GUIDE_PROTOCOLS["T1w"], pd, t1, t2)
    t2w = physics.weighted_image(GUIDE_PROTOCOLS["T2w"], pd, t1, t2)
    assert t1w[0] > t1w[1] > t1w[2]  # T1w: WM brighter than GM brighter than CSF
    assert t2w[2] > t2w[1] > t2w[0]  # T2w: CSF brightest, WM darkest


def test_flair_nulls_csf_at_default_protocol():
    p = FlairProtocol()
    assert physics.null_inversion_time(4000.0, p.tr) == pytest.approx(p.ti, abs=0.5)
    pd, t1, t2 = tissues()
    signal = physics.flair(pd, t1, t2, p.ti, p.tr, p.te)
    assert abs(signal[2].item()) < 0.01 * signal[1].item()  # CSF suppressed next to GM
    assert signal[1] > 0 and signal[0] > 0
    torch.testing.assert_close(physics.flair(pd, t1, t2, magnitude=True), signal.abs())
    with pytest.raises(ValueError, match="positive"):
        physics.null_inversion_time(0.0, 9000.0)


def test_flair_closed_form():
    pd, t1, t2 = torch.tensor([2.0]), torch.tensor([1000.0]), torch.tensor([100.0])
    got = physics.flair(pd, t1, t2, ti=1000.0, tr=1e9, te=100.0)
    assert got.item() == pytest.approx(2 * (1 - 2 / E) / E)


def test_qmri_contrasts_order_shape_and_dim():
    protocol = QMRIProtocol()
    pd, t1, t2 = (torch.rand(4, 5, dtype=torch.float64) * s + o for s, o in ((50, 50), (1000, 500), (100, 50)))
    stack = physics.qmri_contrasts(pd, t1, t2, protocol)
    assert stack.shape == (12, 4, 5)
    torch.testing.assert_close(stack[0], physics.saturation_recovery(pd, t1, protocol.tr[0]))
    torch.testing.assert_close(stack[11], physics.spin_echo(pd, t2, protocol.te[5]))
    batched = physics.qmri_contrasts(pd[None], t1[None], t2[None], protocol, dim=1)
    assert batched.shape == (1, 12, 4, 5)
    torch.testing.assert_close(batched[0], stack)


def test_weighted_image_dispatch_and_error():
    pd, t1, t2 = tissues()
    torch.testing.assert_close(physics.weighted_image(SpinEchoProtocol(), pd, t1, t2), physics.se_guide(pd, t1, t2))
    torch.testing.assert_close(physics.weighted_image(IRSPGRProtocol(), pd, t1, t2), physics.ir_spgr(pd, t1, t2))
    torch.testing.assert_close(physics.weighted_image(FlairProtocol(), pd, t1, t2), physics.flair(pd, t1, t2))
    with pytest.raises(TypeError, match="QMRIProtocol"):
        physics.weighted_image(QMRIProtocol(), pd, t1, t2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_is_preserved(dtype):
    pd, t1, t2 = tissues(dtype)
    for protocol in (IRSPGRProtocol(), SpinEchoProtocol(), FlairProtocol()):
        assert physics.weighted_image(protocol, pd, t1, t2).dtype == dtype
    assert physics.qmri_contrasts(pd, t1, t2).dtype == dtype


def all_models(pd, t1, t2):
    return torch.cat(
        [
            physics.qmri_contrasts(pd, t1, t2).flatten(),
            physics.ir_spgr(pd, t1, t2),
            physics.se_guide(pd, t1, t2),
            physics.flair(pd, t1, t2),
        ]
    )


def test_gradcheck_on_tissue_values():
    pd, t1, t2 = (t.clone().requires_grad_(True) for t in tissues())
    assert torch.autograd.gradcheck(all_models, (pd, t1, t2))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_background_gives_finite_values_and_gradients(dtype):
    zeros = [torch.zeros(3, dtype=dtype, requires_grad=True) for _ in range(3)]
    out = all_models(*zeros)
    assert torch.isfinite(out).all()
    out.sum().backward()
    for z in zeros:
        assert torch.isfinite(z.grad).all()
