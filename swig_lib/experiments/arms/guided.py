"""Guided filtering of Q_l, no learning: the guided filter and the joint bilateral filter.

The arm
-------
The LR maps Q_l (PD [a.u.], T1 [ms], T2 [ms]) are filtered with an HR guide W (T1w, T2w or both as
channels), so that edges of the guide are transferred into the maps:

* **guided filter** (He, Sun & Tang, ECCV 2010 / TPAMI 2013): in every (2r+1)² window the output
  is a linear function of the guide, ``q = a·W + b`` with ``a = cov(W, p)/(var(W) + ε)``, and the
  coefficients are averaged over the windows that contain a voxel;
* **joint bilateral filter** (Petschnigg et al. and Eisemann & Durand, SIGGRAPH 2004): a
  Gaussian-weighted local mean of p whose weights also fall off with the guide difference,
  ``exp(−|ΔW|/σ_color)`` (kornia's default L1 colour distance) times ``exp(−|Δx|²/(2σ_space²))``.

Both run through kornia's maintained implementations (:func:`kornia.filters.guided_blur`,
:func:`kornia.filters.joint_bilateral_blur`), with reflecting borders.

Needs: the subject's HR guides and Q_l; no training set, no per-scan optimisation, no HR qMRI
labels to *apply*. Parameters (radius, ε, σ_color, σ_space) are chosen by :func:`grid_search` /
:func:`tune_filter` on validation subjects: with the label-based score of :func:`tune_filter`
this uses Q_h of the validation subjects (the features table should say so); any label-free
score (e.g. the SWIG loss of the filtered maps) can be passed to :func:`grid_search` instead.

Units and conventions
---------------------
Guides are expected z-scored with brain statistics and zero outside the brain, as in
:class:`swig_lib.experiments.training.windows.SliceSet`; ε is then in (z-score units)², i.e.
dimensionless, and σ_color in z-score units. Radii and σ_space are in voxels. Both filters are
linear in the filtered image for a fixed guide, so one parameter set serves maps of any units.

The brain boundary: Q_l is zero outside the brain, and plain filtering would average that zero
into the rim. With a mask, both filters are *normalised* by the mask: ``F(p·m)/F(m)``. For the
joint bilateral filter this is exactly the weighted mean over brain voxels only. For the guided
filter (linear in p) it divides by the filter's response to the mask, which is 1 wherever the
window lies inside the brain; at the rim it stayed above 0.5 on the smoke subjects (r ≤ 5), and a
floor of :data:`MIN_MASK_RESPONSE` only guards against a division by ~0. The output is zero
outside the mask.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import torch
from kornia.filters import guided_blur, joint_bilateral_blur
from torch import Tensor

from swig_lib.core.metrics import hfen, ssim
from swig_lib.core.models import MAP_NAMES

Method = Literal["guided", "bilateral"]

#: Floor of the guided filter's response to the mask in the normalisation F(p·m)/F(m).
MIN_MASK_RESPONSE = 0.1


@dataclass(frozen=True)
class FilterParams:
    """One setting of a guide filter.

    Attributes
    ----------
    method : {"guided", "bilateral"}
        Guided filter or joint bilateral filter.
    radius : int
        Window radius r, voxels (window 2r + 1); 0 leaves the maps unchanged.
    eps : float
        Guided filter: ε added to the local guide variance, guide units² (z-scored guides:
        dimensionless). Larger ε smooths more.
    sigma_color : float
        Joint bilateral filter: range scale of the guide difference, guide units.
    sigma_space : float
        Joint bilateral filter: spatial Gaussian standard deviation, voxels.
    """

    method: Method
    radius: int
    eps: float = 1e-2
    sigma_color: float = 0.3
    sigma_space: float = 1.0

    def __post_init__(self) -> None:
        if self.method not in ("guided", "bilateral"):
            raise ValueError(f"method must be 'guided' or 'bilateral'; got {self.method!r}")
        if self.radius < 0:
            raise ValueError(f"radius must be a non-negative number of voxels; got {self.radius}")
        if not (self.eps > 0 and self.sigma_color > 0 and self.sigma_space > 0):
            raise ValueError(
                f"eps, sigma_color and sigma_space must be positive; got {self.eps}, "
                f"{self.sigma_color}, {self.sigma_space}"
            )


def _check(images: Tensor, guide: Tensor, mask: Tensor | None) -> Tensor | None:
    """Check shapes (B, C, H, W), (B, G, H, W), (B, H, W); return the mask as (B, 1, H, W) float."""
    if images.ndim != 4 or guide.ndim != 4:
        raise ValueError(
            f"images and guide must be (B, C, H, W); got {tuple(images.shape)} and {tuple(guide.shape)}"
        )
    if guide.shape[0] != images.shape[0] or guide.shape[-2:] != images.shape[-2:]:
        raise ValueError(f"guide {tuple(guide.shape)} does not match images {tuple(images.shape)}")
    if mask is None:
        return None
    if mask.shape != (images.shape[0], *images.shape[-2:]):
        raise ValueError(f"mask {tuple(mask.shape)} must be (B, H, W) of images {tuple(images.shape)}")
    return mask.to(images.dtype).unsqueeze(1)


def guided_filter(
    images: Tensor, guide: Tensor, radius: int, eps: float, mask: Tensor | None = None
) -> Tensor:
    """Guided filter of ``images`` with ``guide`` (kornia), mask-normalised when a mask is given.

    Parameters
    ----------
    images : Tensor
        (B, C, H, W) images to filter, any units.
    guide : Tensor
        (B, G, H, W) guide, G ≥ 1 channels (z-scored: dimensionless).
    radius : int
        Window radius, voxels (window 2·radius + 1).
    eps : float
        Regularisation ε, guide units².
    mask : Tensor, optional
        (B, H, W) brain mask; the output is ``F(p·m)/max(F(m), MIN_MASK_RESPONSE)·m``.

    Returns
    -------
    Tensor
        (B, C, H, W), units of ``images``.
    """
    weight = _check(images, guide, mask)
    kernel = 2 * int(radius) + 1
    if weight is None:
        return guided_blur(guide, images, kernel, eps)
    filtered = guided_blur(guide, images * weight, kernel, eps)
    response = guided_blur(guide, weight, kernel, eps)
    return filtered / response.clamp_min(MIN_MASK_RESPONSE) * weight


def joint_bilateral_filter(
    images: Tensor,
    guide: Tensor,
    radius: int,
    sigma_color: float,
    sigma_space: float,
    mask: Tensor | None = None,
) -> Tensor:
    """Joint bilateral filter of ``images`` with ``guide`` (kornia), restricted to the mask if given.

    Parameters
    ----------
    images : Tensor
        (B, C, H, W) images to filter, any units.
    guide : Tensor
        (B, G, H, W) guide (z-scored: dimensionless).
    radius : int
        Window radius, voxels (window 2·radius + 1).
    sigma_color : float
        Range scale, guide units.
    sigma_space : float
        Spatial standard deviation, voxels.
    mask : Tensor, optional
        (B, H, W) brain mask: the output is the weighted mean over mask voxels only
        (``F(p·m)/F(m)``), zero outside the mask.

    Returns
    -------
    Tensor
        (B, C, H, W), units of ``images``.
    """
    weight = _check(images, guide, mask)
    kernel = (2 * int(radius) + 1,) * 2
    space = (float(sigma_space),) * 2
    if weight is None:
        return joint_bilateral_blur(images, guide, kernel, sigma_color, space)
    filtered = joint_bilateral_blur(images * weight, guide, kernel, sigma_color, space)
    response = joint_bilateral_blur(weight, guide, kernel, sigma_color, space)
    # The centre voxel of a mask voxel has weight 1, so the response is positive there.
    return filtered / response.clamp_min(torch.finfo(images.dtype).tiny) * weight


def filter_maps(q_l: Tensor, guide: Tensor, mask: Tensor, params: FilterParams) -> Tensor:
    """Filter LR maps with a guide: the arm's output Q̂_h.

    Parameters
    ----------
    q_l : Tensor
        (B, 3, H, W) LR maps: PD [a.u.], T1 [ms], T2 [ms].
    guide : Tensor
        (B, G, H, W) z-scored guides (G = 1 for one guide, 2 for T1w and T2w together).
    mask : Tensor
        (B, H, W) brain mask.
    params : FilterParams
        Method and parameters.

    Returns
    -------
    Tensor
        (B, 3, H, W) filtered maps in the units of ``q_l``, zero outside the mask.
    """
    if params.method == "guided":
        return guided_filter(q_l, guide, params.radius, params.eps, mask)
    return joint_bilateral_filter(q_l, guide, params.radius, params.sigma_color, params.sigma_space, mask)


@dataclass(frozen=True)
class GridSearch:
    """Result of :func:`grid_search`.

    Attributes
    ----------
    best : dict
        The parameter combination with the highest score (the first one on ties).
    best_score : float
        Its score.
    table : list of (dict, float)
        Every combination with its score, in the order evaluated.
    """

    best: dict[str, Any]
    best_score: float
    table: list[tuple[dict[str, Any], float]]


def grid_search(score: Callable[[dict[str, Any]], float], grid: Mapping[str, Sequence[Any]]) -> GridSearch:
    """Exhaustive search of a parameter grid for the highest score.

    Parameters
    ----------
    score : callable
        Maps a parameter dict (one value per key of ``grid``) to a float, higher is better
        (negate errors). NaN scores never win.
    grid : mapping of str to sequence
        Candidate values per parameter; the combinations are visited in ``itertools.product``
        order of the keys as given.

    Returns
    -------
    GridSearch
    """
    if not grid or any(len(values) == 0 for values in grid.values()):
        raise ValueError(f"every parameter needs at least one candidate value; got {dict(grid)!r}")
    keys = list(grid)
    table = []
    best: dict[str, Any] | None = None
    best_score = -float("inf")
    for values in itertools.product(*(grid[k] for k in keys)):
        params = dict(zip(keys, values))
        value = float(score(params))
        table.append((params, value))
        if value > best_score:
            best, best_score = params, value
    if best is None:
        raise ValueError("every score was NaN or -inf")
    return GridSearch(best, best_score, table)


def map_score(pred: Tensor, reference: Tensor, mask: Tensor, metric: Literal["ssim", "hfen"]) -> float:
    """Mean slice metric of one map over a batch, signed so that higher is better.

    Parameters
    ----------
    pred, reference : Tensor
        (B, H, W) predicted and reference map, same units.
    mask : Tensor
        (B, H, W) evaluation mask (slices without mask voxels are skipped).
    metric : {"ssim", "hfen"}
        :func:`swig_lib.core.metrics.ssim` (returned as is) or :func:`swig_lib.core.metrics.hfen`
        (returned negated).

    Returns
    -------
    float
    """
    fn, sign = {"ssim": (ssim, 1.0), "hfen": (hfen, -1.0)}[metric]
    values = [fn(p, r, m) for p, r, m in zip(pred, reference, mask) if bool(m.any())]
    if not values:
        raise ValueError("no slice has a mask voxel")
    return sign * sum(values) / len(values)


def tune_filter(
    q_l: Tensor,
    guide: Tensor,
    mask: Tensor,
    reference: Tensor,
    method: Method,
    grid: Mapping[str, Sequence[Any]],
    metric: Literal["ssim", "hfen"] = "ssim",
) -> dict[str, FilterParams]:
    """Choose filter parameters per map on validation slices, against their HR maps.

    Parameters
    ----------
    q_l, guide, mask
        Validation slices as for :func:`filter_maps`.
    reference : Tensor
        (B, 3, H, W) HR maps Q_h of the same slices (validation subjects only).
    method : {"guided", "bilateral"}
        Filter to tune.
    grid : mapping of str to sequence
        Candidates for fields of :class:`FilterParams` (``radius``, ``eps``, ``sigma_color``,
        ``sigma_space``); the rest keep their defaults.
    metric : {"ssim", "hfen"}
        Slice metric in the mask (:func:`map_score`).

    Returns
    -------
    dict of str to FilterParams
        The best parameters for each of ``"PD"``, ``"T1"``, ``"T2"``.
    """
    base = FilterParams(method, radius=0)
    scores: dict[tuple[Any, ...], list[float]] = {}

    def map_scores(params: dict[str, Any]) -> list[float]:
        """Scores of the three maps; one filtering per parameter combination."""
        key = tuple(params.items())
        if key not in scores:
            with torch.no_grad():
                out = filter_maps(q_l, guide, mask, replace(base, **params))
            scores[key] = [map_score(out[:, c], reference[:, c], mask, metric) for c in range(len(MAP_NAMES))]
        return scores[key]

    return {
        name: replace(base, **grid_search(lambda p, c=c: map_scores(p)[c], grid).best)
        for c, name in enumerate(MAP_NAMES)
    }
