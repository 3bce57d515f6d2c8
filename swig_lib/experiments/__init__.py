"""The experiment layer: builds data, trains, evaluates, on top of :mod:`swig_lib.core`.

config (typed profiles), subjects (digital subjects), training, inference, evaluation (metrics
tables, ranking, the ablation), crossseq (the cross-sequence simulation of Sec. IV-B), arms (the
comparison methods), phantom (the NIST/ISMRM phantom scans), plotting and performance.
"""
