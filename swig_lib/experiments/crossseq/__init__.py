"""Cross-sequence validation (paper Sec. III-D.2, IV-B, Table II, Fig. 4), in simulation and on users' data.

* :mod:`.sequence`, :mod:`.reconcnn`, :mod:`.acquisition`: the other sequence's maps (Acq1, Acq5,
  Acq5^R) and the acquired weighted images;
* :mod:`.settings`: protocol and source names, the profile's ``[crosssequence]`` section;
* :mod:`.scoring` and :mod:`.sulci`: synthesised images and their scores, sulcal CSF;
* :mod:`.example`: the display slice of Fig. 4;
* :mod:`.pipeline`: the simulated validation of the test subjects (run, cache, worker pool);
* :mod:`.tables`: Table II beside the paper's, and the ground-truth summaries;
* :mod:`.userdata`: the same scores for users' own NIfTI data;
* :mod:`.figures`: Fig. 4a-c and the tissue errors.
"""
