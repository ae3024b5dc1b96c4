"""The `ijt-local` command. Each subcommand is thin: parse options, call the library, print.

Subcommands live beside the library code they drive (data/, train/, convert/, eval/) and are gathered
here; none of those modules imports torch at module level, so `ijt-local --help` stays fast.
"""

from __future__ import annotations

import sys

import click

from .errors import UserError

# Packages an extra brings, by the top-level module a verb imports: a plain install leaves them out.
EXTRA_OF_MODULE = {
    **dict.fromkeys(
        ("torch", "transformers", "peft", "accelerate", "safetensors", "sentencepiece", "datasets"), "train"
    ),
    **dict.fromkeys(("optuna", "tomli_w"), "fit"),
}


class Group(click.Group):
    """Turns a UserError anywhere below into one line on stderr and exit status 1 (no traceback), and so a
    missing optional dependency into the install line that brings it."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UserError as exc:
            from .train.distributed import is_main_process

            if not is_main_process():  # under torchrun every rank finds the same fault; rank 0 says it
                sys.exit(1)
            raise click.ClickException(str(exc)) from None
        except ModuleNotFoundError as exc:
            extra = EXTRA_OF_MODULE.get((exc.name or "").split(".")[0])
            if extra is None:
                raise
            raise click.ClickException(
                f"this needs {exc.name}, which the plain install leaves out: pip install 'ijt-local[{extra}]'"
            ) from None
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ijt-local")
def cli():
    """Implicit instruction tuning on a laptop: tune, convert, run with the rule expert, compare."""


def _register() -> None:
    from .convert import cli as convert_cli
    from .data import cli as data_cli
    from .eval import cli as eval_cli
    from .replicate import cli as replicate_cli
    from .rules_fit import cli as rules_cli
    from .runtime import cli as runtime_cli
    from .serve import cli as serve_cli
    from .train import cli as train_cli

    for module in (runtime_cli, data_cli, train_cli, convert_cli, eval_cli, serve_cli, rules_cli, replicate_cli):
        for command in module.commands:
            cli.add_command(command)


_register()


def main() -> None:
    cli(prog_name="ijt-local")
