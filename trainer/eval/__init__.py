"""Evaluation of audio responsiveness: pure metrics, plots, the report writer and the `trainer eval` driver."""
