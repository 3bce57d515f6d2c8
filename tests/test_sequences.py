"""Guide sequences as data: closed forms, limits and gradients of each model, presets, sidecars."""

import json
import math

import pytest
import torch

from swig_lib.core import physics
from swig_lib.core.protocols import GUIDE_PROTOCOLS, FlairProtocol
from swig_lib.core.sequences import (
    PRESETS,
    SEQUENCES,
    GuideProtocol,
    ProtocolError,
    guide_signal,
    inversion_recovery,
    load_protocol,
    mprage,
    read_sidecar,
    sidecar_fields,
    spin_echo_recovery,
    spoiled_gradient_echo,
)

F64 = torch.float64
PD, T1, T2 = 80.0, 900.0, 90.0


def scalar(value):
    return torch.tensor([value], dtype=F64)


def maps(n=64, seed=0, dtype=F64):
    """Random tissue-like maps with some background (T1 = T2 = 0) voxels."""
    g = torch.Generator().manual_seed(seed)
    pd = 40 + 80 * torch.rand(n, generator=g, dtype=F64)
    t1 = 200 + 4000 * torch.rand(n, generator=g, dtype=F64)
    t2 = 20 + 2000 * torch.rand(n, generator=g, dtype=F64)
    pd[:4], t1[:4], t2[:4] = 0.0, 0.0, 0.0
    return pd.to(dtype), t1.to(dtype), t2.to(dtype)


#: One valid protocol per sequence (ms, degrees).
EXAMPLES = {
    "IR-SPGR": GuideProtocol("IR-SPGR", tr=6.6, te=2.6, ti=450.0, flip=12.0, td=300.0),
    "SE-alpha": GuideProtocol("SE-alpha", tr=5211.0, te=146.0, flip=160.0),
    "IR": GuideProtocol("IR", tr=4500.0, te=6.9, ti=250.0),
    "SPGR": GuideProtocol("SPGR", tr=6.3, te=2.79, flip=10.0),
    "SE": GuideProtocol("SE", tr=5000.0, te=63.0),
    "FLAIR": GuideProtocol("FLAIR", tr=9000.0, te=120.0, ti=2372.0),
    "MPRAGE": GuideProtocol("MPRAGE", tr=7.1, te=2.98, ti=900.0, flip=9.0, tr_prep=2300.0, readout_pulses=176),
}


def test_registry_has_every_sequence_with_a_referenced_model():
    assert list(SEQUENCES) == ["IR-SPGR", "SE-alpha", "IR", "SPGR", "SE", "FLAIR", "MPRAGE"]
    assert set(EXAMPLES) == set(SEQUENCES)
    for name, model in SEQUENCES.items():
        assert model.name == name
        assert set(model.required) <= {"tr", "te", "ti", "flip", "tr_prep", "readout_pulses"}
    for function in (spoiled_gradient_echo, spin_echo_recovery, inversion_recovery, mprage):
        assert "Parameters" in function.__doc__ and any(year in function.__doc__ for year in ("19", "20"))


# ---------------------------------------------------------------------------------------------
# Closed forms and limits
# ---------------------------------------------------------------------------------------------


def test_spgr_closed_forms_and_ernst_angle():
    pd, t1, t2 = scalar(PD), scalar(T1), scalar(T2)
    tr = T1 * math.log(2.0)  # E1 = 1/2
    # 90°: sin = 1, cos = 0, so S = PD·(1 − E1)·E2.
    got = spoiled_gradient_echo(pd, t1, t2, tr=tr, te=T2, flip=90.0)
    assert got.item() == pytest.approx(PD * 0.5 / math.e, rel=1e-12)
    # The Ernst angle cos α = E1 maximises the signal, at PD·sqrt((1 − E1)/(1 + E1))·E2.
    ernst = math.degrees(math.acos(0.5))
    peak = spoiled_gradient_echo(pd, t1, t2, tr=tr, te=0.0, flip=ernst).item()
    assert peak == pytest.approx(PD * math.sqrt(0.5 / 1.5), rel=1e-12)
    for off in (-1.0, 1.0):
        assert spoiled_gradient_echo(pd, t1, t2, tr=tr, te=0.0, flip=ernst + off).item() < peak
    # TR → ∞: full recovery, S = PD·sin α·E2.
    got = spoiled_gradient_echo(pd, t1, t2, tr=1e9, te=T2, flip=30.0)
    assert got.item() == pytest.approx(PD * 0.5 / math.e, rel=1e-12)


def test_spin_echo_recovery_closed_form_and_limits():
    pd, t1, t2 = scalar(PD), scalar(T1), scalar(T2)
    got = spin_echo_recovery(pd, t1, t2, tr=T1 * math.log(2.0), te=T2)
    assert got.item() == pytest.approx(PD * 0.5 / math.e, rel=1e-12)
    assert spin_echo_recovery(pd, t1, t2, tr=1e9, te=T2).item() == pytest.approx(PD / math.e, rel=1e-12)
    assert spin_echo_recovery(pd, t1, t2, tr=T1, te=0.0).item() == pytest.approx(PD * (1 - 1 / math.e), rel=1e-12)


def test_inversion_recovery_null_and_limits():
    pd, t1, t2 = scalar(PD), scalar(T1), scalar(T2)
    tr = 4500.0
    null = T1 * math.log(2.0 / (1.0 + math.exp(-tr / T1)))
    assert null == pytest.approx(physics.null_inversion_time(T1, tr), rel=1e-12)
    assert inversion_recovery(pd, t1, t2, tr=tr, te=6.9, ti=null).item() == pytest.approx(0.0, abs=1e-12)
    # TI → 0: the inverted recovered magnetisation, magnitude PD·(1 − e^(−TR/T1))·E2.
    expected = PD * (1 - math.exp(-tr / T1)) * math.exp(-6.9 / T2)
    assert inversion_recovery(pd, t1, t2, tr=tr, te=6.9, ti=0.0).item() == pytest.approx(expected, rel=1e-12)
    # TR → ∞ and TE → 0: the textbook |1 − 2e^(−TI/T1)|.
    for ti in (100.0, 400.0, 3000.0):
        got = inversion_recovery(pd, t1, t2, tr=1e9, te=0.0, ti=ti).item()
        assert got == pytest.approx(PD * abs(1 - 2 * math.exp(-ti / T1)), rel=1e-12)


def test_flair_is_signed_and_ir_is_its_magnitude():
    pd, t1, t2 = maps()
    p = EXAMPLES["FLAIR"]
    signed = guide_signal(p, pd, t1, t2)
    magnitude = guide_signal(GuideProtocol("IR", tr=p.tr, te=p.te, ti=p.ti), pd, t1, t2)
    assert bool((signed < 0).any()) and bool((signed > 0).any())
    assert torch.equal(magnitude, signed.abs())
    # TI → 0: eq. 18 gives −PD·(1 − e^(−TR/T1))·E2.
    got = physics.flair(scalar(PD), scalar(T1), scalar(T2), ti=0.0, tr=p.tr, te=p.te).item()
    assert got == pytest.approx(-PD * (1 - math.exp(-p.tr / T1)) * math.exp(-p.te / T2), rel=1e-12)


def test_se_alpha_at_90_degrees():
    # eq. 17 with α = 90°: sin 90° = 1, cos 90° = 0, so W2 = PD·(1 − e^(−(TR − TE)/T1))·E2.
    pd, t1, t2 = scalar(PD), scalar(T1), scalar(T2)
    got = guide_signal(GuideProtocol("SE-alpha", tr=2000.0, te=100.0, flip=90.0), pd, t1, t2).item()
    assert got == pytest.approx(PD * (1 - math.exp(-1900.0 / T1)) * math.exp(-100.0 / T2), rel=1e-12)


def test_ir_spgr_at_zero_inversion_time_is_minus_the_steady_state():
    pd, t1, t2 = scalar(PD), scalar(T1), scalar(T2)
    got = guide_signal(GuideProtocol("IR-SPGR", tr=6.6, te=2.6, ti=1e-9, flip=12.0), pd, t1, t2)
    torch.testing.assert_close(got, -physics.spgr_steady_state(pd, t1, t2, 6.6, 2.6, 12.0), rtol=1e-9, atol=0)


def simulate_mprage(pd, t1, t2, tr, te, ti, flip, tr_prep, n, c, cycles=60):
    """Step the longitudinal magnetisation through ``cycles`` MP-RAGE cycles; signal of pulse c."""
    alpha = math.radians(flip)

    def relax(m, t):
        return pd + (m - pd) * math.exp(-t / t1)

    mz, signal = pd, None
    for _ in range(cycles):
        mz = relax(-mz, ti - c * tr)
        for j in range(n):
            if j == c:
                signal = math.sin(alpha) * mz * math.exp(-te / t2)
            mz = relax(mz * math.cos(alpha), tr)
        mz = relax(mz, tr_prep - (ti - c * tr) - n * tr)
    return signal


@pytest.mark.parametrize("flip,n,c", [(9.0, 176, 88), (9.0, 176, 0), (20.0, 40, 39), (90.0, 3, 1)])
def test_mprage_matches_step_by_step_simulation(flip, n, c):
    args = dict(tr=7.1, te=2.98, ti=900.0 if c else 600.0, flip=flip, tr_prep=2300.0)
    for t1 in (300.0, 900.0, 1500.0, 4000.0):
        got = mprage(scalar(PD), scalar(t1), scalar(T2), readout_pulses=n, centre_pulse=c, **args).item()
        assert got == pytest.approx(simulate_mprage(PD, t1, T2, n=n, c=c, **args), rel=1e-10, abs=1e-12)


def test_mprage_limits():
    pd, t1, t2 = scalar(PD), scalar(T1), scalar(T2)
    common = dict(tr=7.0, te=0.0, ti=800.0, tr_prep=2500.0, readout_pulses=100, centre_pulse=50)
    # α → 0: the readout does not disturb M_z; repeated inversions every tr_prep give the steady
    # state M_a = PD·(1 − E)/(1 + E), E = e^(−tr_prep/T1), and S/sin α = PD·(1 − 2e^(−TI/T1)/(1 + E)).
    flip = 1e-6
    got = mprage(pd, t1, t2, flip=flip, **common).item() / math.sin(math.radians(flip))
    e = math.exp(-2500.0 / T1)
    assert got == pytest.approx(PD * (1 - 2 * math.exp(-800.0 / T1) / (1 + e)), rel=1e-9)
    # tr_prep → ∞: full recovery before each inversion; the centre pulse sees the SPGR approach
    # from PD·(1 − 2e^(−T_A/T1)).
    got = mprage(pd, t1, t2, flip=10.0, **{**common, "tr_prep": 1e9}).item()
    e1, cos_a = math.exp(-7.0 / T1), math.cos(math.radians(10.0))
    m_ss = PD * (1 - e1) / (1 - cos_a * e1)
    m_0 = PD * (1 - 2 * math.exp(-(800.0 - 50 * 7.0) / T1))
    expected = math.sin(math.radians(10.0)) * (m_ss + (m_0 - m_ss) * (cos_a * e1) ** 50)
    assert got == pytest.approx(expected, rel=1e-10)


# ---------------------------------------------------------------------------------------------
# Gradients and presets
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_gradcheck_every_model(name):
    g = torch.Generator().manual_seed(1)
    pd = (40 + 80 * torch.rand(5, generator=g, dtype=F64)).requires_grad_()
    t1 = (300 + 3000 * torch.rand(5, generator=g, dtype=F64)).requires_grad_()
    t2 = (30 + 1000 * torch.rand(5, generator=g, dtype=F64)).requires_grad_()
    protocol = EXAMPLES[name]
    assert guide_signal(protocol, pd, t1, t2).abs().min() > 1e-3  # away from the |.| kink of IR
    assert torch.autograd.gradcheck(lambda a, b, c: guide_signal(protocol, a, b, c), (pd, t1, t2))


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_models_give_finite_zero_gradients_on_background(name):
    pd, t1, t2 = (torch.zeros(3, dtype=F64, requires_grad=True) for _ in range(3))
    out = guide_signal(EXAMPLES[name], pd, t1, t2)
    out.sum().backward()
    assert torch.equal(out.detach(), torch.zeros(3, dtype=F64))
    assert all(bool(torch.isfinite(x.grad).all()) for x in (pd, t1, t2))


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_presets_reproduce_the_paper_guides_exactly(dtype):
    pd, t1, t2 = maps(dtype=dtype)
    for name in ("T1w", "T2w"):
        expected = physics.weighted_image(GUIDE_PROTOCOLS[name], pd, t1, t2)
        assert torch.equal(guide_signal(PRESETS[name], pd, t1, t2), expected)
    assert torch.equal(guide_signal(PRESETS["FLAIR"], pd, t1, t2), physics.weighted_image(FlairProtocol(), pd, t1, t2))
    assert PRESETS["T1w"] == GuideProtocol("IR-SPGR", tr=6.6, te=2.6, ti=450.0, flip=12.0, td=0.0)
    assert PRESETS["T2w"] == GuideProtocol("SE-alpha", tr=5211.0, te=146.0, flip=160.0)


# ---------------------------------------------------------------------------------------------
# Sidecars
# ---------------------------------------------------------------------------------------------


def write(tmp_path, meta, name="guide.json"):
    path = tmp_path / name
    path.write_text(json.dumps(meta), encoding="utf-8")
    return path


def test_sidecar_converts_seconds_to_ms_exactly(tmp_path):
    ir = write(tmp_path, {"RepetitionTime": 4.5, "EchoTime": 0.0069, "InversionTime": 0.25, "FlipAngle": 180,
                          "ScanningSequence": ["SE", "IR"], "SequenceVariant": ["SK", "SP", "MP"]})
    assert read_sidecar(ir) == GuideProtocol("IR", tr=4500.0, te=6.9, ti=250.0)
    gre = write(tmp_path, {"RepetitionTime": 0.0066, "EchoTime": 0.0026, "FlipAngle": 12,
                           "ScanningSequence": "GR", "SequenceVariant": "SP"})
    assert read_sidecar(gre) == GuideProtocol("SPGR", tr=6.6, te=2.6, flip=12)
    tse = write(tmp_path, {"RepetitionTime": 5, "EchoTime": 0.063, "FlipAngle": 180, "ScanningSequence": "SE"})
    assert read_sidecar(tse) == GuideProtocol("SE", tr=5000.0, te=63.0)
    # dcm2niix writes code strings joined by "_"; PulseSequenceType and SwigSequence take precedence.
    mp = write(tmp_path, {"ScanningSequence": "GR_IR", "SwigSequence": "MPRAGE", "RepetitionTime": 2.3,
                          "RepetitionTimeExcitation": 0.0071, "EchoTime": 0.00298, "InversionTime": 0.9,
                          "FlipAngle": 9, "SwigReadoutPulses": 176})
    assert read_sidecar(mp) == GuideProtocol("MPRAGE", tr=7.1, te=2.98, ti=900.0, flip=9, tr_prep=2300.0,
                                             readout_pulses=176)
    flair = write(tmp_path, {"PulseSequenceType": "flair", "RepetitionTime": 9, "EchoTime": 0.12,
                             "InversionTime": 2.372, "ScanningSequence": "GR"})
    assert read_sidecar(flair) == GuideProtocol("IR", tr=9000.0, te=120.0, ti=2372.0)


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_sidecar_round_trip(tmp_path, name):
    protocol = EXAMPLES[name]
    assert read_sidecar(write(tmp_path, sidecar_fields(protocol))) == protocol


def test_sidecar_round_trip_of_presets_and_load_protocol(tmp_path):
    for name, protocol in PRESETS.items():
        assert load_protocol(name) is protocol
        assert load_protocol(write(tmp_path, sidecar_fields(protocol), f"{name}.json")) == protocol
        assert load_protocol(str(tmp_path / f"{name}.json")) == protocol
    assert sidecar_fields(PRESETS["T1w"]) == {"SwigSequence": "IR-SPGR", "RepetitionTime": 0.0066, "EchoTime": 0.0026,
                                              "InversionTime": 0.45, "FlipAngle": 12.0, "SwigInversionDelay": 0.0}


SE = {"ScanningSequence": "SE", "RepetitionTime": 5.0, "EchoTime": 0.1}
MP = {"SwigSequence": "MPRAGE", "RepetitionTimePreparation": 2.3, "RepetitionTimeExcitation": 0.007,
      "EchoTime": 0.003, "InversionTime": 0.9, "FlipAngle": 9, "SwigReadoutPulses": 176}

SIDECAR_ERRORS = [
    ({"ScanningSequence": "SE", "EchoTime": 0.1},
     "RepetitionTime is missing (needed by SE); give RepetitionTime in seconds, as BIDS does"),
    ({**SE, "RepetitionTime": 4500},
     "RepetitionTime = 4500 looks like milliseconds; BIDS gives seconds: write 4.5"),
    ({**SE, "EchoTime": 100},
     "EchoTime = 100 looks like milliseconds; BIDS gives seconds: write 0.1"),
    ({**SE, "EchoTime": 6.0},
     "EchoTime = 6 s is not below RepetitionTime = 5 s; check the units and that both belong to this image"),
    ({**SE, "EchoTime": -0.01},
     "EchoTime = -0.01 s is not in (0, 30 s]; give EchoTime in seconds, as BIDS does"),
    ({**SE, "EchoTime": "0.1"},
     "EchoTime = '0.1' is not a finite number; give EchoTime in seconds, as BIDS does"),
    ({**SE, "EchoTime": [0.01, 0.02]},
     "EchoTime is a list (2 values); a guide is one image: give the sidecar of one echo or inversion, with one number"),
    ({"ScanningSequence": "GR", "RepetitionTime": 0.007, "EchoTime": 0.003, "FlipAngle": 200},
     "FlipAngle = 200 degrees is outside (0, 180]; give the flip angle in degrees"),
    ({"ScanningSequence": "GR", "RepetitionTime": 0.007, "EchoTime": 0.003, "FlipAngle": 0},
     "FlipAngle = 0 degrees is outside (0, 180]; give the flip angle in degrees"),
    ({"ScanningSequence": "GR", "RepetitionTime": 0.007, "EchoTime": 0.003},
     "FlipAngle is missing (needed by SPGR); give FlipAngle in degrees"),
    ({"ScanningSequence": "GR", "RepetitionTime": 6.6, "EchoTime": 2.6, "FlipAngle": 12},
     "RepetitionTime = 6.6 s is implausible for a gradient-echo readout (above 2 s); check the units "
     "(seconds: 0.0066 for 6.6 ms)"),
    ({"ScanningSequence": ["SE", "IR"], "RepetitionTime": 4.5, "EchoTime": 0.01, "InversionTime": 5.0},
     "InversionTime = 5 s is not below RepetitionTime = 4.5 s; check the units and that both belong to this image"),
    ({"ScanningSequence": ["GR", "IR"], "RepetitionTime": 0.007, "EchoTime": 0.003},
     "ScanningSequence ['GR', 'IR'] fits both IR-SPGR and MPRAGE; add \"SwigSequence\": \"IR-SPGR\" or \"MPRAGE\""),
    ({"ScanningSequence": "EP", "RepetitionTime": 3.0},
     "cannot tell the sequence type (no SwigSequence, PulseSequenceType or ScanningSequence with SE, GR or IR); "
     "add \"SwigSequence\": one of IR-SPGR, SE-alpha, IR, SPGR, SE, FLAIR, MPRAGE"),
    ({**SE, "SwigSequence": "TSE"},
     "SwigSequence = 'TSE' is unknown; use one of IR-SPGR, SE-alpha, IR, SPGR, SE, FLAIR, MPRAGE"),
    ({**MP, "SwigReadoutPulses": 0},
     "SwigReadoutPulses = 0 is not a pulse count; give SwigReadoutPulses as a whole number"),
    ({**MP, "SwigCentrePulse": 176},
     "SwigCentrePulse = 176 is not below SwigReadoutPulses = 176; give the index (from 0) of the pulse at the "
     "centre of k-space"),
    ({**MP, "InversionTime": 0.5},
     "InversionTime = 0.5 s is shorter than the 88 readout pulses (RepetitionTimeExcitation = 0.007 s) before "
     "the centre of k-space; give the time from the inversion to the centre of k-space"),
    ({**MP, "RepetitionTimePreparation": 1.2},
     "RepetitionTimePreparation = 1.2 s is shorter than InversionTime plus the 88 readout pulses after the centre "
     "of k-space; give the time between two inversions"),
    ({k: v for k, v in MP.items() if k != "RepetitionTimeExcitation"},
     "RepetitionTimeExcitation is missing (needed by MPRAGE); give RepetitionTimeExcitation in seconds, as BIDS does"),
]


@pytest.mark.parametrize("meta,message", SIDECAR_ERRORS)
def test_sidecar_errors_name_the_file_the_field_and_the_fix(tmp_path, meta, message):
    path = write(tmp_path, meta)
    with pytest.raises(ProtocolError) as err:
        read_sidecar(path)
    assert str(err.value) == f"{path}: {message}"


def test_sidecar_that_is_not_a_json_object(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(ProtocolError) as err:
        read_sidecar(path)
    assert str(err.value) == f'{path}: the sidecar is not a JSON object; write {{"RepetitionTime": ..., ...}}'
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(ProtocolError, match=r"bad\.json: cannot read a JSON sidecar \(.*\); give a BIDS JSON"):
        read_sidecar(path)
    with pytest.raises(ProtocolError) as err:
        load_protocol(str(tmp_path / "missing.json"))
    assert str(err.value) == f"{tmp_path / 'missing.json'}: neither a preset (T1w, T2w, FLAIR) nor a sidecar file; " \
                             "check the name or path"


@pytest.mark.parametrize("kwargs,message", [
    (dict(sequence="SPIRAL", tr=5.0, te=1.0),
     "GuideProtocol: sequence 'SPIRAL' is unknown; use one of IR-SPGR, SE-alpha, IR, SPGR, SE, FLAIR, MPRAGE"),
    (dict(sequence="SE", tr=5000.0, te=100.0, ti=200.0), "GuideProtocol: ti is not used by SE; leave it out"),
    (dict(sequence="SE", te=100.0), "GuideProtocol: tr is missing (needed by SE); give tr in ms"),
    (dict(sequence="SE", tr=50_000.0, te=100.0), "GuideProtocol: tr = 50000 ms is not in (0, 30000 ms]; give tr in ms"),
    (dict(sequence="SE", tr=float("nan"), te=100.0), "GuideProtocol: tr = nan is not a finite number; give tr in ms"),
    (dict(sequence="IR-SPGR", tr=6.6, te=2.6, ti=450.0, flip=12.0, td=-1.0),
     "GuideProtocol: td = -1 ms is negative; give the delay before the inversion"),
    (dict(sequence="SE", tr=100.0, te=100.0),
     "GuideProtocol: te = 100 ms is not below tr = 100 ms; check the units and that both belong to this image"),
])
def test_protocol_errors_in_code(kwargs, message):
    with pytest.raises(ProtocolError) as err:
        GuideProtocol(**kwargs)
    assert str(err.value) == message
