"""Subcommands of this package, gathered by ijt_local.cli. torch/transformers load only when a command runs."""

from __future__ import annotations

import json

import click

from .. import cli_options as options
from .gguf_output import OUTTYPES


def _echo(summary: dict) -> None:
    click.echo(json.dumps(summary))


@click.command("merge")
@options.base(
    "The base the adapter was trained on: `default`, a GGUF file, a Hugging Face folder or repo id.", required=True
)
@options.adapter(
    "PEFT LoRA folder (adapter_config.json + adapter_model.safetensors), e.g. a `train` --out.",
    required=True,
    type=click.Path(file_okay=False),
)
@options.out("Hugging Face folder to write the merged model to.", file=None, required=True)
def merge_command(base, adapter, out):
    """Merge a LoRA adapter into its base; writes safetensors + config + tokenizer."""
    from .merge import merge

    _echo(merge(base, adapter, out))


@click.command("convert")
@click.argument("hf_dir", type=click.Path())
@options.out("GGUF file to write.", file=None, required=True)
@options.outtype(OUTTYPES, "Encoding of the weight matrices (norms stay f32).")
@options.quantize("Then quantize with llama.cpp to TYPE (Q4_K_M, Q5_K_M, Q6_K, Q8_0, ...).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def convert_command(hf_dir, out, outtype, quantize_type, no_progress):
    """Convert a Hugging Face llama / qwen2 / gemma3 / olmo / olmo2 folder to GGUF."""
    from .hf_to_gguf import convert

    _echo(convert(hf_dir, out, outtype, quantize_type, progress=not no_progress))


@click.command("quantize")
@click.argument("source", type=click.Path())
@click.argument("out", type=click.Path())
@click.argument("kind", metavar="TYPE", required=False)
@click.option("--type", "old_type", metavar="TYPE", hidden=True)
@options.threads("CPU threads for llama.cpp's quantizer (default: all cores).")
def quantize_command(source, out, kind, old_type, threads):
    """Quantize a GGUF file to TYPE (Q4_K_M, Q5_K_M, Q6_K, Q8_0, Q4_0, ...) with llama.cpp's quantizer, as
    `llama-quantize SOURCE OUT TYPE` does (`convert --quantize TYPE` converts, then does the same)."""
    from pathlib import Path

    from ..errors import UserError
    from .quantize import quantize_gguf

    if old_type is not None:  # the spelling before 0.2
        if kind is not None:
            raise UserError("--type is the old spelling of TYPE: give TYPE once, after OUT")
        click.echo(
            f"warning: --type is deprecated and goes in {options.OLD_SPELLINGS_GO_IN}; give TYPE after OUT", err=True
        )
        kind = old_type
    if kind is None:
        raise UserError("quantize needs TYPE after OUT (Q4_K_M, Q5_K_M, Q6_K, Q8_0, ...)")

    _echo(quantize_gguf(Path(source), Path(out), kind, threads))


@click.command("export-adapter")
@click.argument("adapter_dir", type=click.Path())
@options.base("The base model GGUF the adapter will run on (`default` or a path).", required=True)
@options.out("GGUF adapter file to write.", file=None, required=True)
@options.outtype(["f32", "f16"], "f16 runs faster; f32 is exact (for parity checks).")
def export_adapter_command(adapter_dir, base, out, outtype):
    """Write a PEFT LoRA as a GGUF LoRA adapter for `--adapter` at run time."""
    from .export_adapter import export_adapter

    _echo(export_adapter(adapter_dir, base, out, outtype))


commands: list = [merge_command, convert_command, quantize_command, export_adapter_command]
