"""The linear-operator contract, checked on every linear operator of the package.

Like sigpy's ``check_linop_linear``/``check_linop_adjoint`` and deepinv's ``adjointness_test``: each
operator has ``forward(x)`` and ``adjoint(y)``, and

* linearity: ``A(a x + b z) = a A x + b A z``;
* adjointness: ``<A x, y> = <x, A^H y>`` to float64 rounding (relative to ``|A x| |y|``);
* shapes and dtypes: ``A x`` lies in the range space, ``A^H y`` in the domain, in the input's precision;
* window equivalence (Φ on a window): the windowed Φ equals the full-grid Φ on every voxel of the
  window when the image is zero outside it, at any window position, wrapping included (the claim of
  "Φ on a window" in :mod:`swig_lib.core.kspace`).

Operators: Φ of eq. 3 on the full grid (:class:`~swig_lib.core.kspace.KSpaceTruncation`), Φ on a
window (:class:`~swig_lib.core.kspace.WindowedTruncation`) and the radial NUFFT
(:class:`~swig_lib.core.radial.NUFFT`). Add every new linear operator to ``OPERATORS``.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, NamedTuple

import numpy as np
import pytest
import torch

from swig_lib.core.kspace import KSpaceTruncation
from swig_lib.core.radial import NUFFT, golden_angles, radial_trajectory

#: Tolerance of the float64 contract checks, relative to the norms involved.
RTOL = 1e-12


class Case(NamedTuple):
    """An operator with random vectors of its domain (x, z) and of its range (y)."""

    operator: Any
    x: Any
    z: Any
    y: Any


def _real(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _complex(shape: tuple[int, ...], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)


def _phi_full(grid: tuple[int, int], keep: float) -> Case:
    shape = (2, *grid)
    return Case(KSpaceTruncation(keep), _real(shape, 0), _real(shape, 1), _real(shape, 2))


def _phi_window(grid: tuple[int, int], window: tuple[int, int], keep: float) -> Case:
    shape = (2, 3, *window)
    operator = KSpaceTruncation(keep).on_window(grid, window, torch.float64)
    return Case(operator, _real(shape, 3), _real(shape, 4), _real(shape, 5))


def _nufft(shape: tuple[int, int], batch: tuple[int, ...]) -> Case:
    kx, ky = radial_trajectory(golden_angles(9), shape, 0.8)
    operator = NUFFT(kx, ky, shape)
    image, samples = (*batch, *shape), (*batch, kx.size)
    return Case(operator, _complex(image, 6), _complex(image, 7), _complex(samples, 8))


#: Every linear operator of the package, in the configurations that matter (odd and even axes,
#: the paper's keep and another, a window that is the whole grid, batches).
OPERATORS: dict[str, Callable[[], Case]] = {
    "phi-even-grid": lambda: _phi_full((32, 40), 0.5),
    "phi-odd-grid": lambda: _phi_full((31, 27), 0.3),
    "phi-keep-all": lambda: _phi_full((16, 15), 1.0),
    "phi-window": lambda: _phi_window((30, 27), (20, 16), 0.5),
    "phi-window-whole-grid": lambda: _phi_window((24, 21), (24, 21), 0.5),
    "nufft": lambda: _nufft((23, 30), ()),
    "nufft-batched": lambda: _nufft((16, 20), (3,)),
}


def _array(v: Any) -> np.ndarray:
    return v.numpy() if isinstance(v, torch.Tensor) else np.asarray(v)


def _inner(a: Any, b: Any) -> complex:
    """<a, b> = sum a * conj(b)."""
    return complex(np.vdot(_array(b), _array(a)))


def _norm(v: Any) -> float:
    return float(np.linalg.norm(_array(v).ravel()))


def check_linear(case: Case) -> None:
    """A(a x + b z) = a A x + b A z, with complex scalars on a complex domain."""
    op, x, z = case.operator, case.x, case.z
    a, b = (0.7 - 1.3j, -2.1 + 0.4j) if np.iscomplexobj(_array(x)) else (0.7, -2.1)
    lhs = _array(op.forward(a * x + b * z))
    rhs = a * _array(op.forward(x)) + b * _array(op.forward(z))
    scale = abs(a) * _norm(op.forward(x)) + abs(b) * _norm(op.forward(z))
    assert scale > 0
    assert np.linalg.norm((lhs - rhs).ravel()) <= RTOL * scale


def check_adjoint(case: Case) -> None:
    """<A x, y> = <x, A^H y> to float64 rounding."""
    op, x, y = case.operator, case.x, case.y
    forward, adjoint = op.forward(x), op.adjoint(y)
    lhs, rhs = _inner(forward, y), _inner(x, adjoint)
    assert abs(lhs) > 0
    assert abs(lhs - rhs) <= RTOL * _norm(forward) * _norm(y), (lhs, rhs)


def check_spaces(case: Case) -> None:
    """A x has the shape and precision of y; A^H y those of x."""
    op, x, y = case.operator, case.x, case.y
    forward, adjoint = op.forward(x), op.adjoint(y)
    assert forward.shape == y.shape and adjoint.shape == x.shape
    assert forward.dtype == y.dtype and adjoint.dtype == x.dtype


@pytest.mark.parametrize("check", [check_linear, check_adjoint, check_spaces])
@pytest.mark.parametrize("name", list(OPERATORS))
def test_linear_operator_contract(name: str, check: Callable[[Case], None]) -> None:
    check(OPERATORS[name]())


@pytest.mark.parametrize("name", ["phi-odd-grid", "phi-window", "nufft"])
def test_the_adjoint_check_rejects_a_wrong_adjoint(name: str) -> None:
    """A 1e-6 error in A^H fails the check: the tolerance is far below what a wrong adjoint gives."""
    case = OPERATORS[name]()
    op = case.operator
    wrong = SimpleNamespace(forward=op.forward, adjoint=lambda y: (1 + 1e-6) * op.adjoint(y))
    with pytest.raises(AssertionError):
        check_adjoint(case._replace(operator=wrong))


GRID, WINDOW = (30, 27), (20, 16)


@pytest.mark.parametrize("offset", [(0, 0), (4, 9), (17, 15), (29, 26)])  # the last three wrap
@pytest.mark.parametrize("keep", [0.5, 0.3])
def test_phi_on_a_window_equals_phi_on_the_grid(offset: tuple[int, int], keep: float) -> None:
    """Forward and adjoint on a window equal the full-grid Φ of an image zero outside the window."""
    phi = KSpaceTruncation(keep)
    windowed = phi.on_window(GRID, WINDOW, torch.float64)
    assert windowed.phi is phi and windowed.grid == GRID and windowed.window == WINDOW
    rows = (torch.arange(WINDOW[0]) + offset[0]) % GRID[0]
    cols = (torch.arange(WINDOW[1]) + offset[1]) % GRID[1]
    inside = _real((2, *WINDOW), 10)
    embedded = torch.zeros(2, *GRID, dtype=torch.float64)
    embedded[:, rows[:, None], cols[None, :]] = inside
    full_forward = phi.forward(embedded)[:, rows[:, None], cols[None, :]]
    full_adjoint = phi.adjoint(embedded)[:, rows[:, None], cols[None, :]]
    torch.testing.assert_close(windowed.forward(inside), full_forward, rtol=0, atol=1e-12)
    torch.testing.assert_close(windowed.adjoint(inside), full_adjoint, rtol=0, atol=1e-12)


def test_phi_on_a_window_containing_the_support() -> None:
    """An image supported inside a wrapped window: the windowed Φ of its crop is Φ on the window."""
    gen = torch.Generator().manual_seed(4)
    image = torch.zeros(2, 30, 27, dtype=torch.float64)
    image[:, 3:14, 20:26] = torch.rand(2, 11, 6, generator=gen, dtype=torch.float64)
    full = KSpaceTruncation(0.5).forward(image)
    rows = (torch.arange(20) + 0) % 30
    cols = (torch.arange(16) + 15) % 27  # wraps around the field of view
    phi = KSpaceTruncation(0.5).on_window((30, 27), (20, 16), torch.float64)
    cropped = image[:, rows][:, :, cols]
    assert torch.allclose(phi.forward(cropped), full[:, rows][:, :, cols], atol=1e-12)


def test_windowed_phi_is_not_the_full_grid_phi_outside_its_claim() -> None:
    """Without the zero-outside condition the window differs from the grid (the claim is tight)."""
    phi = KSpaceTruncation(0.5)
    image = _real((1, *GRID), 11)
    windowed = phi.on_window(GRID, WINDOW, torch.float64).forward(image[:, : WINDOW[0], : WINDOW[1]])
    full = phi.forward(image)[:, : WINDOW[0], : WINDOW[1]]
    assert (windowed - full).abs().max() > 1e-3
