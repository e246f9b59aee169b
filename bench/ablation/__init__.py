"""The responsiveness ablation and its ship study (issue 13), split by concern; bench/responsiveness_ablation.py is
the command line and its docstring the overview."""
