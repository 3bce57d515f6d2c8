"""Signal equations: the forward models M^i (qMRI contrasts) and M_g^j (weighted guides).

Every function takes torch tensors that broadcast against each other (float32 or float64, any
device) and is differentiable. Units: PD in arbitrary units (a.u.), T1, T2 and all sequence times
in milliseconds, flip angles in degrees. Equation numbers refer to Samadifardheris et al.

Background voxels carry T1 = T2 = 0. Relaxation times are therefore clamped from below at
:data:`MIN_RELAXATION_MS` before they divide anything, so that background gives finite values
(the limit T → 0⁺) and finite (zero) gradients instead of NaN.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from swig_lib.core.protocols import (
    FlairProtocol,
    IRSPGRProtocol,
    QMRIProtocol,
    SpinEchoProtocol,
)

#: Smallest relaxation time used inside the signal equations, ms.
MIN_RELAXATION_MS = 1e-3


def _relaxation(t: Tensor) -> Tensor:
    """Clamp a relaxation time (ms) at :data:`MIN_RELAXATION_MS` from below."""
    return torch.clamp(t, min=MIN_RELAXATION_MS)


def decay(time_ms: float | Tensor, t: Tensor) -> Tensor:
    """Return the relaxation factor e^(−time/T), T clamped at :data:`MIN_RELAXATION_MS`.

    Parameters
    ----------
    time_ms : float or Tensor
        Elapsed time, ms.
    t : Tensor
        Relaxation time T1 or T2, ms.
    """
    return torch.exp(-time_ms / _relaxation(t))


def saturation_recovery(pd: Tensor, t1: Tensor, tr: float | Tensor) -> Tensor:
    """Saturation-recovery signal, eq. 13: PD·(1 − e^(−TR/T1)).

    Parameters
    ----------
    pd : Tensor
        Proton density, a.u.
    t1 : Tensor
        Longitudinal relaxation time, ms.
    tr : float or Tensor
        Repetition time, ms.

    Returns
    -------
    Tensor
        Signal in the units of ``pd``.
    """
    return pd * (1.0 - decay(tr, t1))


def spin_echo(pd: Tensor, t2: Tensor, te: float | Tensor) -> Tensor:
    """Mono-exponential spin-echo decay, eq. 14: PD·e^(−TE/T2).

    Parameters
    ----------
    pd : Tensor
        Proton density, a.u.
    t2 : Tensor
        Transverse relaxation time, ms.
    te : float or Tensor
        Echo time, ms.
    """
    return pd * decay(te, t2)


def spgr_steady_state(pd: Tensor, t1: Tensor, t2: Tensor, tr: float, te: float, flip: float) -> Tensor:
    """Steady-state magnetisation of a spoiled gradient echo train, eq. 16.

    M_z,eq = PD·(1 − E1)/(1 − cos(α)·E1)·e^(−TE/T2), with E1 = e^(−TR/T1).

    Parameters
    ----------
    pd : Tensor
        Proton density, a.u.
    t1, t2 : Tensor
        Relaxation times, ms.
    tr, te : float
        Repetition and echo time, ms.
    flip : float
        Flip angle α, degrees.
    """
    e1 = decay(tr, t1)
    cos_a = math.cos(math.radians(flip))
    return pd * (1.0 - e1) / (1.0 - cos_a * e1) * decay(te, t2)


def ir_spgr(
    pd: Tensor,
    t1: Tensor,
    t2: Tensor,
    tr: float = IRSPGRProtocol.tr,
    te: float = IRSPGRProtocol.te,
    tp: float = IRSPGRProtocol.tp,
    td: float = IRSPGRProtocol.td,
    flip: float = IRSPGRProtocol.flip,
) -> Tensor:
    """T1-weighted guide: inversion-recovery spoiled gradient echo, eq. 15-16.

    The printed eq. 15 lost a bracket. We implement the physical reading: the SPGR steady state
    M_z,eq (eq. 16) recovers for TD, is inverted, then recovers for TP until acquisition::

        W1 = −(M_z,eq·e^(−TD/T1) + PD·(1 − e^(−TD/T1)))·e^(−TP/T1) + PD·(1 − e^(−TP/T1))

    Parameters
    ----------
    pd : Tensor
        Proton density, a.u.
    t1, t2 : Tensor
        Relaxation times, ms.
    tr, te, tp, td : float
        Readout repetition time, echo time, inversion-to-acquisition time and delay before the
        inversion, ms (defaults: the paper's 6.6 / 2.6 / 450 / 0 ms).
    flip : float
        Readout flip angle, degrees (default 12°).
    """
    mz_eq = spgr_steady_state(pd, t1, t2, tr, te, flip)
    before_inversion = mz_eq * decay(td, t1) + saturation_recovery(pd, t1, td)
    return -before_inversion * decay(tp, t1) + saturation_recovery(pd, t1, tp)


def se_guide(
    pd: Tensor,
    t1: Tensor,
    t2: Tensor,
    tr: float = SpinEchoProtocol.tr,
    te: float = SpinEchoProtocol.te,
    flip: float = SpinEchoProtocol.flip,
) -> Tensor:
    """T2-weighted guide: spin echo with refocusing angle α, eq. 17.

    W2 = PD·sin(180° − α)·(1 − E)/(1 − cos(180° − α)·E)·e^(−TE/T2), with E = e^(−(TR − TE)/T1).

    Parameters
    ----------
    pd : Tensor
        Proton density, a.u.
    t1, t2 : Tensor
        Relaxation times, ms.
    tr, te : float
        Repetition and echo time, ms (defaults: the paper's 5211 / 146 ms).
    flip : float
        Refocusing angle α, degrees (default 160°).
    """
    beta = math.radians(180.0 - flip)
    e = decay(tr - te, t1)
    return pd * math.sin(beta) * (1.0 - e) / (1.0 - math.cos(beta) * e) * decay(te, t2)


def flair(
    pd: Tensor,
    t1: Tensor,
    t2: Tensor,
    ti: float = FlairProtocol.ti,
    tr: float = FlairProtocol.tr,
    te: float = FlairProtocol.te,
    magnitude: bool = False,
) -> Tensor:
    """T2-FLAIR, eq. 18 multiplied by PD: PD·(1 − 2e^(−TI/T1) + e^(−TR/T1))·e^(−TE/T2).

    Parameters
    ----------
    pd : Tensor
        Proton density, a.u.
    t1, t2 : Tensor
        Relaxation times, ms.
    ti, tr, te : float
        Inversion, repetition and echo time, ms.
    magnitude : bool
        Return ``|signal|``, as a scanner's magnitude image does (tissue with T1 above the nulled
        T1 comes out bright instead of negative). Default: the signed eq. 18.
    """
    signal = pd * (1.0 - 2.0 * decay(ti, t1) + decay(tr, t1)) * decay(te, t2)
    return signal.abs() if magnitude else signal


def null_inversion_time(t1: float, tr: float) -> float:
    """Inversion time that nulls a tissue of longitudinal relaxation time ``t1`` (eq. 18 = 0).

    Solves 1 − 2e^(−TI/T1) + e^(−TR/T1) = 0: TI = −T1·ln((1 + e^(−TR/T1))/2).

    Parameters
    ----------
    t1, tr : float
        T1 of the tissue to null (e.g. CSF) and the repetition time, ms.

    Returns
    -------
    float
        TI, ms.
    """
    if t1 <= 0 or tr <= 0:
        raise ValueError(f"T1 and TR must be positive (ms); got T1={t1}, TR={tr}")
    return -t1 * math.log((1.0 + math.exp(-tr / t1)) / 2.0)


def qmri_contrasts(
    pd: Tensor, t1: Tensor, t2: Tensor, protocol: QMRIProtocol = QMRIProtocol(), dim: int = 0
) -> Tensor:
    """The qMRI contrasts M^i(Q), i = 1..12 (eq. 2 with eq. 13-14), stacked along ``dim``.

    Saturation-recovery contrasts (one per ``protocol.tr``) come first, then spin-echo contrasts
    (one per ``protocol.te``), the order the fitter :func:`swig_lib.core.fitter.fit_qmri` expects.

    Parameters
    ----------
    pd, t1, t2 : Tensor
        Maps of equal shape: PD (a.u.), T1 and T2 (ms).
    protocol : QMRIProtocol
        Repetition and echo times, ms.
    dim : int
        Axis of the output that indexes the contrasts.

    Returns
    -------
    Tensor
        ``protocol.n_contrasts`` images of the shape of the maps, stacked along ``dim``.
    """
    images = [saturation_recovery(pd, t1, tr) for tr in protocol.tr]
    images += [spin_echo(pd, t2, te) for te in protocol.te]
    return torch.stack(images, dim=dim)


def weighted_image(
    protocol: IRSPGRProtocol | SpinEchoProtocol | FlairProtocol, pd: Tensor, t1: Tensor, t2: Tensor
) -> Tensor:
    """Synthesise the weighted image of ``protocol`` from maps (M_g^j of eq. 4, or eq. 18).

    Parameters
    ----------
    protocol : IRSPGRProtocol, SpinEchoProtocol or FlairProtocol
        Which signal equation (eq. 15-16, eq. 17 or eq. 18) and its parameters.
    pd, t1, t2 : Tensor
        PD (a.u.), T1 and T2 (ms).
    """
    if isinstance(protocol, IRSPGRProtocol):
        return ir_spgr(pd, t1, t2, protocol.tr, protocol.te, protocol.tp, protocol.td, protocol.flip)
    if isinstance(protocol, SpinEchoProtocol):
        return se_guide(pd, t1, t2, protocol.tr, protocol.te, protocol.flip)
    if isinstance(protocol, FlairProtocol):
        return flair(pd, t1, t2, protocol.ti, protocol.tr, protocol.te)
    raise TypeError(f"no signal equation for protocol of type {type(protocol).__name__}")
