"""Evaluation: metrics tables, benchmark reports and plots."""
