"""`trainer` subcommands: every module here is one subcommand.

A module defines ``NAME`` (the subcommand), ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``.
"""
