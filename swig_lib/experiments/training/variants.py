"""The models of the ablation (Table I) as configuration: guides, Q_l input, data consistency, α."""

from __future__ import annotations

from dataclasses import dataclass

#: Guide channels of the prepared data, in this order; a variant picks a subset.
GUIDE_ORDER: tuple[str, ...] = ("T1w", "T2w")

@dataclass(frozen=True)
class Variant:
    """One model of the ablation (Table I), as configuration.

    Attributes
    ----------
    name : str
        ``M<guides><Q_l input><data consistency>``, e.g. ``"M12++"``.
    guides : tuple of str
        Guides used as input *and* in L_h (``"T1w"``, ``"T2w"``).
    use_ql : bool
        Q_l as network input (first "+").
    data_consistency : bool
        L_l in the loss (second "+").
    alpha : float or None
        Weight of L_h; None takes the profile's ``train.alpha``.
    randomised : bool
        Trained with degradation randomisation (each training subject with its own Φ, on the
        dataset of :func:`swig_lib.experiments.training.augment.randomised_profile`): the
        transfer model (issue 11).
    """

    name: str
    guides: tuple[str, ...]
    use_ql: bool
    data_consistency: bool
    alpha: float | None = None
    randomised: bool = False

    def resolved_alpha(self, profile_alpha: float) -> float:
        """α actually used: the variant's own value, else the profile's."""
        return float(profile_alpha if self.alpha is None else self.alpha)


#: The five models of Table I, the α = 0 control the paper lacks and M12++ trained with degradation
#: randomisation (the transfer model, issue 11).
VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("M12++", ("T1w", "T2w"), use_ql=True, data_consistency=True),
        Variant("M2++", ("T2w",), use_ql=True, data_consistency=True),
        Variant("M1++", ("T1w",), use_ql=True, data_consistency=True),
        Variant("M12-+", ("T1w", "T2w"), use_ql=False, data_consistency=True),
        Variant("M12--", ("T1w", "T2w"), use_ql=False, data_consistency=False),
        Variant("M12++a0", ("T1w", "T2w"), use_ql=True, data_consistency=True, alpha=0.0),
        Variant("M12++dr", ("T1w", "T2w"), use_ql=True, data_consistency=True, randomised=True),
    )
}
