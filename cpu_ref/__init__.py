"""Readable CPU reference implementations (numpy + numba only; never imports gpusim).

These are the oracle for the CPU fast path and the GPU kernels: per-portfolio functions are
named ``*_1d_nb``, their population versions ``*_nb``.
"""
