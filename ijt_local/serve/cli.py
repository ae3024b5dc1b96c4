"""`ijt-local serve`: models (with or without the rule expert) behind an OpenAI-compatible endpoint.

    ijt-local serve --model default+poe                       # http://127.0.0.1:8000/v1
    ijt-local serve --model poe=default+poe --model tuned=default+poetry-lora.gguf@0.5 --parallel 8

The app and its routes are in app.py; this module only reads the options, opens the models and runs it.
"""

from pathlib import Path

import click

from .. import cli_options as options


@click.command()
@options.model(
    "A model to serve (repeatable): `default+poe`, `default+poetry-lora.gguf@0.5`, a GGUF path, ...; requests "
    "pick one by NAME.",
    "model_args",
    multiple=True,
    default=("default+poe",),
    show_default=True,
    metavar="[NAME=]SPEC",
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@options.parallel(8, "Requests decoded at once per model (one llama.cpp batch).")
@options.ctx("Tokens per request (prompt + reply); the KV cache holds --parallel x --ctx.", "seq_ctx")
@options.threads()
@options.gpu_layers
@options.rules_config
@click.option(
    "--api-key",
    default=None,
    envvar="IJT_LOCAL_API_KEY",
    help="Require `Authorization: Bearer KEY` on /v1/ (also $IJT_LOCAL_API_KEY).",
)
@click.option(
    "--allow-specs",
    is_flag=True,
    help="Let a request's `model` be any SPEC over a loaded model: rules, ablations and LoRA adapters "
    "per request (adapters from --adapter-dir, loaded once).",
)
@click.option(
    "--adapter-dir",
    type=click.Path(file_okay=False, exists=True),
    default=".",
    show_default=True,
    help="With --allow-specs: the folder request adapters must lie in.",
)
@click.option(
    "--spec-engines",
    default=2,
    show_default=True,
    type=click.IntRange(min=1),
    help="With --allow-specs: adapter sets kept loaded at once, one engine (and KV cache) each.",
)
def serve(
    model_args,
    host,
    port,
    parallel,
    seq_ctx,
    threads,
    gpu_layers,
    rules_config,
    api_key,
    allow_specs,
    adapter_dir,
    spec_engines,
):
    """Serve models with the rule expert behind an OpenAI-compatible API (/v1/chat/completions)."""
    import uvicorn

    from ..runtime.specs import RunOptions, open_spec, parse_named_specs
    from .app import create_app
    from .engine import Engine
    from .spec_engines import RuleSets, ServedModel, SpecEngines

    specs = parse_named_specs(model_args, bare=True)
    if host not in ("127.0.0.1", "localhost", "::1") and not api_key:
        click.echo(
            f"warning: serving on {host} without authentication; anyone who can reach the port can use "
            "it (pass --api-key)",
            err=True,
        )
    served, spec_engines_open = {}, None
    rule_sets = RuleSets(rules_config)
    try:
        bases = {}
        for name, spec in specs:
            loaded = open_spec(
                spec, RunOptions(n_ctx=seq_ctx, threads=threads, gpu_layers=gpu_layers, rules_config=rules_config)
            )
            # the spec's rules come from the shared cache, so requests naming the same set (ijt_rules, or a spec
            # under --allow-specs) use the same config, and the session resolves it against the vocabulary once
            session, rules = loaded.session, rule_sets.get(spec.rules) if spec.poe else None
            served[name] = ServedModel(name, spec.text, Engine(session, parallel, seq_ctx), rules, rule_sets)
            if not spec.adapters or spec.model not in bases:
                bases[spec.model] = (session, None if spec.adapters else served[name].engine)
            click.echo(f"serving {name} ({spec.text}) at http://{host}:{port}/v1", err=True)
        if allow_specs:
            spec_engines_open = SpecEngines(bases, parallel, seq_ctx, Path(adapter_dir), rule_sets, spec_engines)
            click.echo(
                f"any spec over {', '.join(bases)} per request; adapters from {Path(adapter_dir).resolve()}", err=True
            )
        uvicorn.run(create_app(served, api_key, spec_engines_open), host=host, port=port, log_level="warning")
    finally:
        if spec_engines_open is not None:
            spec_engines_open.close()
        for model in served.values():
            model.engine.close()
            model.engine.session.close()


commands = [serve]
