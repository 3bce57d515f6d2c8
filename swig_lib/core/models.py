"""The SWIG qMRI SR network (paper Sec. III-B, Fig. 1c) and its input normalisation.

A ResNet: an initial convolution, five residual blocks (conv-BN-ReLU-conv-BN plus the skip) and a
final 9×9 convolution with linear output. Inputs (Sec. III-B.2):

* Q_l (3 channels, when the variant uses it) divided channel-wise by fixed scales, the brain-masked
  means of PD, T1 and T2 over the training set, stored in the model as the buffer ``q_scale``;
* the guides W^j, z-scored per volume with brain-mask statistics (:func:`zscore_guide`; done by
  the caller because the statistics are those of the whole volume, not of a slice or a crop).

Physically valid output
-----------------------
The network predicts a residual r (3 channels) in the *softplus domain* of the scaled maps::

    Q̂_h = s ⊙ softplus(softplus⁻¹(max(Q_l / s, ε)) + r) ⊙ mask     (softplus floored at 10⁻⁶)

* **Positive by construction**: softplus > 0, so T1, T2 > 0 and PD ≥ 0 (0 only outside the brain),
  without clamping that would zero gradients; the signal equations never see T ≤ 0.
* **Starts at Q_l**: the last convolution is zero-initialised, so r = 0 and the untrained model
  returns Q_l exactly (wherever Q_l/s ≥ ε): training starts from the measurement, not from noise,
  and only has to learn a correction (sharper edges, the LR fit's bias at the brain rim). It also
  makes the α rule well defined (L_l and L_h of the untrained model are those of Q_l,
  :func:`swig_lib.experiments.training.loop.balanced_alpha`). Gradients reach the earlier layers from the second
  step on (after the first update of the last layer).
* **Additive where it matters**: softplus(u) ≈ u for u ≳ 3, so for tissue values (Q_l/s ~ 0.5-15)
  r acts as an additive correction in units of the training mean: edges are sums, and the
  gradients are well conditioned. Near zero it turns logarithmic and keeps the output positive.
  A multiplicative residual, Q_l·exp(r), was rejected: it can never leave a voxel where Q_l ≈ 0
  (fit failures, the mask rim) and its gradients grow exponentially with r.

Variants without the Q_l input (M12-+, M12--) use the same head with Q_l/s replaced by 1: the
untrained model returns the training-set mean of each map inside the brain, a physically valid,
featureless start.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

#: Names of the quantitative maps, in channel order; PD in a.u., T1 and T2 in ms.
MAP_NAMES: tuple[str, ...] = ("PD", "T1", "T2")

#: Lower bound ε of Q_l/s before softplus⁻¹ (dimensionless; 1e-3 of the training mean).
SCALED_FLOOR = 1e-3

#: Smallest output, in units of the training mean (keeps T1, T2 > 0 where softplus underflows).
MIN_SCALED_OUTPUT = 1e-6


def softplus_inverse(y: Tensor) -> Tensor:
    """Inverse of softplus for y > 0: y + log(1 − e^(−y)), stable for small and large y."""
    return y + torch.log(-torch.expm1(-y))


def zscore_guide(guide: Tensor, mask: Tensor) -> Tensor:
    """Z-score a guide with brain-mask statistics; zero outside the mask (Sec. III-B.2).

    Parameters
    ----------
    guide : Tensor
        A guide volume (any shape, arbitrary units).
    mask : Tensor
        Brain mask, same shape, bool.

    Returns
    -------
    Tensor
        (guide − mean)/std over the mask voxels, times the mask (dimensionless).
    """
    values = guide[mask]
    if values.numel() < 2:
        raise ValueError("the brain mask needs at least two voxels to z-score a guide")
    std = values.std()
    if not torch.isfinite(std) or std == 0:
        raise ValueError("the guide is constant (or not finite) inside the brain mask")
    return (guide - values.mean()) / std * mask


def masked_channel_means(maps: Sequence[Tensor], masks: Sequence[Tensor]) -> Tensor:
    """Per-channel mean of maps over the brain voxels of all volumes (the scaling of Sec. III-B.2).

    Parameters
    ----------
    maps : sequence of Tensor
        (3, ...) maps per subject: PD [a.u.], T1 [ms], T2 [ms].
    masks : sequence of Tensor
        Brain masks (...), bool, one per subject.

    Returns
    -------
    Tensor
        (3,) float64 means in the maps' units.
    """
    sums = torch.zeros(len(MAP_NAMES), dtype=torch.float64)
    count = 0
    for q, mask in zip(maps, masks, strict=True):
        sums += q[:, mask].to(torch.float64).sum(dim=1)
        count += int(mask.sum())
    if count == 0:
        raise ValueError("no brain voxels to compute the map scaling from")
    means = sums / count
    if not (means > 0).all():
        raise ValueError(f"map means over the brain must be positive; got {means.tolist()}")
    return means


def receptive_radius(
    n_blocks: int = 5, first_kernel: int = 3, last_kernel: int = 9, **_: Any
) -> int:
    """Receptive radius of :class:`SwigResNet`, voxels per side: k₀//2 + 2·n_blocks + k_last//2.

    Extra keyword arguments (the rest of a ``[model]`` profile section) are ignored.
    """
    return first_kernel // 2 + 2 * n_blocks + last_kernel // 2


class ResidualBlock(nn.Module):
    """conv3×3-BN-ReLU-conv3×3-BN plus the identity skip (He et al., paper ref. 23)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Return ``x`` plus the block's residual."""
        return x + self.body(x)


class SwigResNet(nn.Module):
    """ResNet of Fig. 1c mapping (Q_l, guides) to physically valid HR maps Q̂_h.

    Parameters
    ----------
    guides : sequence of str
        Guide names the model takes, in channel order (``"T1w"``, ``"T2w"``).
    use_ql : bool
        Whether Q_l is an input (first "+" of Table I).
    q_scale : sequence of float
        Scales s of PD [a.u.], T1 [ms], T2 [ms]: brain-masked training-set means of Q_l.
    width : int
        Feature channels of every hidden layer.
    n_blocks : int
        Residual blocks (5 in the paper).
    first_kernel, last_kernel : int
        Kernel sizes of the initial and final convolution (odd; the paper's last is 9).

    Notes
    -----
    ``spec`` holds every constructor argument, so ``SwigResNet(**spec)`` plus ``state_dict``
    (which includes ``q_scale``) rebuilds the model.
    """

    def __init__(
        self,
        guides: Sequence[str],
        use_ql: bool,
        q_scale: Sequence[float],
        width: int = 64,
        n_blocks: int = 5,
        first_kernel: int = 3,
        last_kernel: int = 9,
    ) -> None:
        super().__init__()
        if not guides and not use_ql:
            raise ValueError("the model needs Q_l or at least one guide as input")
        if first_kernel % 2 == 0 or last_kernel % 2 == 0:
            raise ValueError("kernel sizes must be odd (same-size convolutions)")
        self.spec: dict[str, Any] = {
            "guides": list(guides),
            "use_ql": bool(use_ql),
            "q_scale": [float(s) for s in q_scale],
            "width": int(width),
            "n_blocks": int(n_blocks),
            "first_kernel": int(first_kernel),
            "last_kernel": int(last_kernel),
        }
        self.register_buffer("q_scale", torch.tensor(self.spec["q_scale"], dtype=torch.float32))
        in_channels = (len(MAP_NAMES) if use_ql else 0) + len(guides)
        self.head = nn.Sequential(
            nn.Conv2d(in_channels, width, first_kernel, padding=first_kernel // 2),
            nn.ReLU(inplace=True),
        )
        self.blocks = nn.Sequential(*(ResidualBlock(width) for _ in range(n_blocks)))
        self.tail = nn.Conv2d(width, len(MAP_NAMES), last_kernel, padding=last_kernel // 2)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)
        # Channels-last convolutions are 2-3x faster on CPU (oneDNN) and suit cuDNN as well.
        self.to(memory_format=torch.channels_last)

    @property
    def guides(self) -> list[str]:
        """Guide names, in input channel order."""
        return self.spec["guides"]

    @property
    def use_ql(self) -> bool:
        """Whether Q_l is an input."""
        return self.spec["use_ql"]

    @property
    def receptive_radius(self) -> int:
        """Voxels from which an output voxel can be influenced, per side (:func:`receptive_radius`)."""
        return receptive_radius(
            self.spec["n_blocks"], self.spec["first_kernel"], self.spec["last_kernel"]
        )

    def scale_maps(self, q: Tensor) -> Tensor:
        """Q (B, 3, H, W) in physical units → softplus-domain input u = softplus⁻¹(max(Q/s, ε))."""
        scaled = q / self.q_scale.view(1, -1, 1, 1).to(q.dtype)
        return softplus_inverse(scaled.clamp_min(SCALED_FLOOR))

    def unscale_maps(self, u: Tensor) -> Tensor:
        """Inverse of :meth:`scale_maps`: s ⊙ max(softplus(u), 10⁻⁶), physical units, always > 0.

        The floor only acts where softplus underflows (u ≲ −14), where its gradient is ~0 anyway.
        """
        return nn.functional.softplus(u).clamp_min(MIN_SCALED_OUTPUT) * self.q_scale.view(
            1, -1, 1, 1
        ).to(u.dtype)

    def forward(self, q_l: Tensor | None, guides: Tensor | None, mask: Tensor) -> Tensor:
        """Predict Q̂_h.

        Parameters
        ----------
        q_l : Tensor or None
            (B, 3, H, W) LR maps, PD [a.u.], T1 [ms], T2 [ms]; ignored (may be None) when the
            model does not use Q_l.
        guides : Tensor or None
            (B, G, H, W) z-scored guides in the order of :attr:`guides` (None when G = 0).
        mask : Tensor
            (B, H, W) brain mask.

        Returns
        -------
        Tensor
            (B, 3, H, W) HR maps in physical units; T1, T2 > 0 and PD > 0 in the brain, 0 outside.
        """
        mask_f = mask.to(self.q_scale.dtype).unsqueeze(1)
        inputs = []
        if self.use_ql:
            base = self.scale_maps(q_l) * mask_f
            inputs.append(q_l / self.q_scale.view(1, -1, 1, 1) * mask_f)
        else:
            base = softplus_inverse(torch.ones_like(self.q_scale)).view(1, -1, 1, 1)
        if self.guides:
            if guides is None or guides.shape[1] != len(self.guides):
                raise ValueError(
                    f"the model expects {len(self.guides)} guide channels {self.guides}"
                )
            inputs.append(guides * mask_f)
        features = self.head(torch.cat(inputs, dim=1).contiguous(memory_format=torch.channels_last))
        residual = self.tail(self.blocks(features))
        return self.unscale_maps(base + residual) * mask_f
