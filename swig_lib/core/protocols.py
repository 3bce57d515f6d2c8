"""Acquisition protocols as data: the paper's parameters, used everywhere instead of literals.

All times are in milliseconds (ms) and flip angles in degrees. The defaults are the values of
Samadifardheris et al., section III-A.1, except the T2-FLAIR protocol, which the paper does not
list (see :class:`FlairProtocol`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class QMRIProtocol:
    """The 12-contrast Cartesian qMRI protocol that produces the LR maps (eq. 13-14).

    Attributes
    ----------
    tr : tuple of float
        Repetition times of the six saturation-recovery contrasts (eq. 13), ms.
    te : tuple of float
        Echo times of the six spin-echo contrasts (eq. 14), ms.
    """

    tr: tuple[float, ...] = (360.0, 540.0, 810.0, 1215.0, 1822.0, 2733.0)
    te: tuple[float, ...] = (10.0, 20.0, 40.0, 80.0, 160.0, 320.0)

    @property
    def n_contrasts(self) -> int:
        """Number of contrasts: saturation-recovery ones first, then spin-echo ones."""
        return len(self.tr) + len(self.te)


@dataclass(frozen=True)
class IRSPGRProtocol:
    """T1-weighted guide: inversion-recovery spoiled gradient echo (eq. 15-16).

    Attributes
    ----------
    tr, te : float
        Repetition and echo time of the SPGR readout, ms.
    tp : float
        Time from inversion to acquisition, ms.
    td : float
        Delay before the inversion, ms.
    flip : float
        Readout flip angle, degrees.
    """

    tr: float = 6.6
    te: float = 2.6
    tp: float = 450.0
    td: float = 0.0
    flip: float = 12.0


@dataclass(frozen=True)
class SpinEchoProtocol:
    """T2-weighted guide: (fast) spin echo with refocusing angle ``flip`` (eq. 17).

    Attributes
    ----------
    tr, te : float
        Repetition and echo time, ms.
    flip : float
        Refocusing flip angle, degrees (eq. 17 uses 180° − flip).
    """

    tr: float = 5211.0
    te: float = 146.0
    flip: float = 160.0


@dataclass(frozen=True)
class FlairProtocol:
    """T2-FLAIR (eq. 18), used only to test synthesis of a contrast never used as a guide.

    The paper does not give its FLAIR parameters. The defaults are typical of clinical 1.5 T
    T2-FLAIR (TR 9000 ms, TE 120 ms) with the inversion time that nulls CSF of T1 = 4000 ms:
    TI = −T1·ln((1 + e^(−TR/T1))/2) = 2372 ms (:func:`swig_lib.core.physics.null_inversion_time`).

    Attributes
    ----------
    ti, tr, te : float
        Inversion, repetition and echo time, ms.
    """

    ti: float = 2372.0
    tr: float = 9000.0
    te: float = 120.0


#: The guides of the paper, by the names used in model variants ("T1w", "T2w").
GUIDE_PROTOCOLS: dict[str, IRSPGRProtocol | SpinEchoProtocol] = {
    "T1w": IRSPGRProtocol(),
    "T2w": SpinEchoProtocol(),
}
