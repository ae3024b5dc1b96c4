"""Subcommands: models, chat, generate."""

commands: list = []
