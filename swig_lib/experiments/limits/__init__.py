"""Limits (issue "Limits"; notebook 09): pathology the training never saw, and guides that do not match the model.

* :mod:`.lesions`: seeded MS-like white-matter lesions and a tumour with two T2 compartments in a
  test subject's HR maps, acquired through the dataset's pipeline; lesion regions, contrast, bias;
* :mod:`.mismatch`: perturbed guides: bias field, protocol error, fast-spin-echo T2w (EPG),
  misregistration, noise, a missing guide's stand-in;
* :mod:`.settings`: the profile's ``[limits]`` section;
* :mod:`.chapter`: :func:`.chapter.run_limits`, the chapter's runs, summaries and guidance;
* :mod:`.figures`: lesion crops, curves of metric change against mismatch size, the worst mismatch.
"""
