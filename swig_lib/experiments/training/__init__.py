"""Self-supervised training of the SWIG models (paper Sec. III-B.3, Table I), with checkpoints.

No HR quantitative map is used here: the loss (eq. 12) needs only the acquired LR contrasts C_l,
the LR maps Q_l, the guides W and the brain mask, and the checkpoint kept as ``<variant>.pt`` is
the epoch with the lowest *validation self-supervised loss*. Q_h enters only
:mod:`swig_lib.experiments.evaluation`.

Slices and crops
----------------
The network runs on 2-D axial slices (last NIfTI axis) cropped to a fixed in-plane window around
the brain: the union bounding box of the training and validation brains, plus a margin equal to
the network's receptive radius, so that every brain voxel sees the same inputs as on the whole
slice and inference on a crop equals inference on the full slice. Φ is applied exactly on the
crop: the dataset's :class:`swig_lib.core.kspace.KSpaceTruncation` (``TrainingData.phi``) restricted
to the window (:func:`~swig_lib.experiments.training.loop.crop_phi`). Windows wrap around the field
of view like the DFT does.

Outputs (``<out>`` defaults to ``results/<profile>``)
------------------------------------------------------
``checkpoints/<variant>.pt``
    the selected epoch (lowest validation L_total); what ``swig apply`` and ``swig evaluate`` use.
``checkpoints/<variant>.last.pt``
    the latest epoch, with optimiser and RNG states; ``--resume`` continues from it exactly.
``logs/<variant>.csv``
    one row per epoch and split: loss_lr (L_l), loss_guide (L_h), loss_total, alpha, time_s.

"""
