"""Figure scripts: each prints figures that benchmarks/RESULTS.md cites with its command.

Run them from the repository root as modules, `python -m benchmarks.NAME [options]` (they import
each other and llm4seg as packages, with no sys.path edits). The machinery of time-boxed GPU runs
(session scripts, dataset and checkpoint packers, carry folders) lives in `benchmarks.gpu`.
"""
