"""The benchmark suite behind `gmtrouter bench`: every router on every dataset, seeds, k-shot, one report.

plan (what to run) -> datasets (the records files) -> runner (one isolated process per job, resumable)
-> aggregate (mean and 95% t-interval over seeds) -> report (docs/results.md) and plots (PNG).
"""
