"""Your own data: training on a BIDS-like folder, guide protocol checks, scan-specific adaptation.

* :mod:`.folder`: :class:`~swig_lib.experiments.owndata.folder.OwnDataset`, a user's folder of LR
  maps (or LR contrasts), HR guides with BIDS sidecars and brain masks, read into the interface of
  :func:`swig_lib.experiments.training.windows.prepare_data` (``swig train --data DIR``); without
  LR contrasts the data term uses contrasts synthesised from the LR maps;
* :mod:`.protocols`: a guide's sidecar protocol against the model's, within
  :class:`~swig_lib.experiments.owndata.protocols.ProtocolTolerance` (``swig apply`` refuses a
  mismatch unless ``--accept-protocol-mismatch``);
* :mod:`.adapt`: fine-tune a trained model on the subject it processes, or train a fresh one on
  it (``swig apply --adapt N`` / ``--from-scratch N``).

No HR quantitative map is read anywhere. Units: PD in a.u., T1, T2 and sequence times in ms
(BIDS files give seconds and are converted where they are read), flip angles in degrees.
"""
