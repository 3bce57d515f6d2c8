"""The science core: pure functions and small operator objects on tensors, no experiment files.

protocols (sequence parameters), physics (signal equations, eq. 13-18), sequences (guide signal
models and BIDS sidecars), kspace (the operator Φ, eq. 3), radial (NUFFT), epg and dictionary
(transient-state simulation and matching), fitter and relaxometry (voxel-wise fits), losses
(eq. 9-12), models (the network of Fig. 1c), metrics (SSIM, HFEN) and io (NIfTI, atomic writes).
Nothing here imports from :mod:`swig_lib.experiments`, :mod:`swig_lib.book` or :mod:`swig_lib.cli`.
"""
