"""The book tooling: the papermill runner with provenance, glue values and Colab cells.

Needs the ``book`` extra (nbformat, papermill, jupyter-book); nothing in :mod:`swig_lib.core` or
:mod:`swig_lib.experiments` imports it.
"""
