"""Subcommands of this package, gathered by ijt_local.cli."""

commands: list = []
