"""Subcommands of the ``nos`` command line, one module each.

Every module here defines ``register(subparsers)``, which adds its parser(s) and sets
``run=<function(args) -> int>`` as the default; :mod:`nos.cli` discovers the modules, so a
new command is a new file. Heavy imports belong inside the ``run`` functions, which keeps
``nos --help`` fast.
"""
