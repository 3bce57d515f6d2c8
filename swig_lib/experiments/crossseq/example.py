"""The display slice of Fig. 4: one axial slice of every map set and image, saved as ``.npz``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from swig_lib.core.io import atomic_path


@dataclass
class Example:
    """One axial slice of everything Fig. 4 shows.

    Attributes
    ----------
    subject : str
        Subject id (or the user's data name).
    slice : int
        Axial index in the subject's volume.
    mask : ndarray, shape (X, Y), bool
        Brain mask.
    maps : dict of (protocol, source) to ndarray (3, X, Y)
        Map sets (PD a.u., T1 ms, T2 ms), ``(REFERENCE, REFERENCE)`` for Q_h when known.
    acquired : dict of str to ndarray (X, Y)
        Acquired images by contrast.
    synthesized : dict of (protocol, source, contrast) to ndarray (X, Y)
        Synthesised (and intensity-matched) images.
    labels : ndarray, shape (X, Y), or None
        Tissue labels, when known.
    """

    subject: str
    slice: int
    mask: np.ndarray
    maps: dict[tuple[str, str], np.ndarray]
    acquired: dict[str, np.ndarray]
    synthesized: dict[tuple[str, str, str], np.ndarray]
    labels: np.ndarray | None = None

    def save(self, path: str | Path) -> None:
        """Write a compressed ``.npz`` atomically."""
        arrays: dict[str, np.ndarray] = {"mask": self.mask, "info": np.array([self.subject, str(self.slice)])}
        arrays |= {"maps|" + "|".join(k): v for k, v in self.maps.items()}
        arrays |= {"acquired|" + k: v for k, v in self.acquired.items()}
        arrays |= {"synthesized|" + "|".join(k): v for k, v in self.synthesized.items()}
        if self.labels is not None:
            arrays["labels"] = self.labels
        with atomic_path(path) as tmp:
            np.savez_compressed(tmp, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> Example:
        """Read what :meth:`save` wrote."""
        with np.load(path) as npz:
            arrays = {k: npz[k] for k in npz.files}
        parts = {k: tuple(k.split("|")[1:]) for k in arrays if "|" in k}
        subject, index = (str(x) for x in arrays["info"])
        return cls(
            subject=subject,
            slice=int(index),
            mask=arrays["mask"].astype(bool),
            maps={parts[k]: v for k, v in arrays.items() if k.startswith("maps|")},
            acquired={parts[k][0]: v for k, v in arrays.items() if k.startswith("acquired|")},
            synthesized={parts[k]: v for k, v in arrays.items() if k.startswith("synthesized|")},
            labels=arrays.get("labels"),
        )


def example_slice(subject: str, z: int, mask: np.ndarray, maps: Mapping[tuple[str, str], np.ndarray],
                  acquired: Mapping[str, np.ndarray], images: Mapping[tuple[str, str, str], np.ndarray],
                  labels: np.ndarray | None) -> Example:
    """Axial slice ``z`` of a subject's volumes, as an :class:`Example`.

    Parameters
    ----------
    subject : str
        Subject id (or the user's data name).
    z : int
        Axial index.
    mask : ndarray of bool, shape (X, Y, Z)
        Brain mask.
    maps : mapping of (protocol, source) to ndarray (3, X, Y, Z)
        Map sets (PD a.u., T1 ms, T2 ms).
    acquired : mapping of str to ndarray (X, Y, Z)
        Acquired images by contrast.
    images : mapping of (protocol, source, contrast) to ndarray (X, Y, Z)
        Synthesised images.
    labels : ndarray, shape (X, Y, Z), or None
        Tissue labels, when known.

    Returns
    -------
    Example
    """
    return Example(subject, int(z), mask[..., z], {k: v[..., z] for k, v in maps.items()},
                   {k: v[..., z] for k, v in acquired.items()},
                   {k: v[..., z] for k, v in images.items()},
                   None if labels is None else labels[..., z])
