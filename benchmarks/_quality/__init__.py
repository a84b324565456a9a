"""Helpers of ``benchmarks/quality.py``: models, explanation methods, evaluation, reports."""
