"""Real 3 T scans of the NIST/ISMRM system phantom: conversion, references, and the real-scan chapter.

:mod:`~swig_lib.experiments.phantom.convert` (DICOM to the repository's NIfTI copy),
:mod:`~swig_lib.experiments.phantom.reference` (spheres, reference tables, temperature choice),
:mod:`~swig_lib.experiments.phantom.plates` (series, signal models, guides, fits),
:mod:`~swig_lib.experiments.phantom.superres` (scan-specific SR with the SWIG loss),
:mod:`~swig_lib.experiments.phantom.chapter` (notebook 07) and
:mod:`~swig_lib.experiments.phantom.figures`.
"""
