"""Comparison arms: the related systems and the obvious baselines beside SWIG (issue "Where SWIG stands").

One module per arm; each module's docstring says what the arm is, what it needs and which paper
it follows. What each needs (HR qMRI labels / subject guides / a training set / per-scan
optimisation):

* :mod:`.guided`: guided filter and joint bilateral filter of Q_l (kornia). Labels: only if the
  parameters are tuned against the validation subjects' Q_h (:func:`.guided.tune_filter`; any
  label-free score can be used instead); guides: yes; training set: no; per-scan: no.
* :mod:`.pnp`: MRI2Qmap-like plug-and-play HQS with a contrast-conditional weighted-image
  denoiser. Labels: no (the training subjects' HR maps only synthesise weighted images, never a
  target); guides: no; training set: yes (the denoiser); per-scan: yes (the iterations).
* :mod:`.scan_specific`: REFINE-MORE-like Fourier-feature INR fitted to one subject with the SWIG
  loss or L_l alone. Labels: no; guides: yes (no in the data-consistency-only variant); training
  set: no; per-scan: yes.
* :mod:`.supervised`: the upper bound, SWIG's ResNet and budget trained with MSE to Q_h.
  Labels: yes; guides: yes; training set: yes; per-scan: no.
* :mod:`.q2mri`: Q2MRI-like direct estimation from the guides alone, loss l₁ + λ(1 − SSIM).
  Labels: yes; guides: yes; training set: yes; per-scan: no.

:mod:`.chapter` runs them all beside SWIG on the ablation's test subjects, scores, ranks and times
them (:func:`.chapter.run_comparison`, notebook 08).
"""
