"""The runtime commands as a user runs them: chat through a pipe, generate with resume, bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner
from gemma_lora import make_gemma_lora

from ijt_local.cli import cli


def run_cli(*args, input=None):
    return subprocess.run(
        [sys.executable, "-m", "ijt_local", *args], input=input, capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow
def test_chat_through_a_pipe_keeps_history_and_resets():
    chat = ("chat", "--model", "smollm2-135m-instruct", "--max-tokens", "16")
    session = run_cli(*chat, input="My name is Ada.\nWhat is my name?\n/reset\nWhat is my name?\n")
    fresh = run_cli(*chat, input="What is my name?\n")
    assert session.returncode == 0 and fresh.returncode == 0, session.stderr + fresh.stderr
    assert "(history cleared)" in session.stderr
    assert session.stderr.count("tok/s") == 3 and fresh.stderr.count("tok/s") == 1
    # after /reset the reply is the fresh one; with the history in the prompt it was not
    assert session.stdout.endswith(fresh.stdout)
    assert session.stdout.count(fresh.stdout) == 1


@pytest.mark.slow
def test_chat_poe_on_the_base_model_stops_on_its_own():
    result = run_cli("chat", "--poe", "--max-tokens", "300", input="Give me two tips for sleeping well.\n")
    assert result.returncode == 0, result.stderr
    assert "stop]" in result.stderr
    assert "<|user|>" not in result.stdout


@pytest.mark.slow
def test_generate_prompt_prints_the_reply():
    result = CliRunner().invoke(
        cli,
        [
            "generate",
            "--model",
            "smollm2-135m-instruct",
            "--prompt",
            "What is the capital of France?",
            "--max-tokens",
            "30",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "Paris" in result.output


@pytest.mark.slow
def test_generate_file_is_resumable(tmp_path):
    inputs = tmp_path / "in.jsonl"
    rows = [
        {"instruction": "Name a color."},
        {"instruction": "Name a fruit."},
        {"messages": [{"role": "user", "content": "Name an animal."}]},
    ]
    inputs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out.jsonl"
    # an interrupted earlier run: one finished row and a torn second line
    out.write_text(
        json.dumps(
            {
                "instruction": "Name a color.",
                "output": "Red.",
                "generator": "smollm2-135m-instruct",
                "finish_reason": "stop",
                "n_tokens": 2,
            }
        )
        + "\n"
        + '{"instruction": "Na'
    )
    args = [
        "generate",
        "--model",
        "smollm2-135m-instruct",
        "--input",
        str(inputs),
        "--out",
        str(out),
        "--max-tokens",
        "20",
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["instruction"] for r in written] == ["Name a color.", "Name a fruit.", "Name an animal."]
    assert written[0]["output"] == "Red."  # kept, not regenerated
    for row in written[1:]:
        assert set(row) == {"instruction", "output", "generator", "finish_reason", "n_tokens"}
        assert row["generator"] == "smollm2-135m-instruct"
        assert row["finish_reason"] in ("stop", "length")
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0 and "already generated" in again.output
    assert len(out.read_text().splitlines()) == 3
    # the same file with another model would mix two generators' replies: refused, file untouched
    before = out.read_text()
    other = CliRunner().invoke(cli, [*args, "--poe"])
    assert other.exit_code != 0
    assert other.output.strip().splitlines()[-1] == (
        f"Error: {out} holds replies from smollm2-135m-instruct, not smollm2-135m-instruct+poe; "
        "give another --out (or delete the file) to generate with this model"
    )
    assert out.read_text() == before


@pytest.mark.slow
def test_model_spec_is_the_same_as_the_options(tmp_path):
    """`--model 'default+a.gguf@0.8+poe:eos,uniform'` runs what --adapter/--poe/--rules run, as serve's SPEC."""
    adapter = tmp_path / "a.gguf"
    make_gemma_lora(adapter, 1)
    prompt = ("--prompt", "Give me two tips for sleeping well.", "--max-tokens", "24")
    as_spec = run_cli("generate", "--model", f"default+{adapter}@0.8+poe:eos,uniform", *prompt)
    as_options = run_cli("generate", "--adapter", f"{adapter}@0.8", "--poe", "--rules", "uniform,eos", *prompt)
    without_adapter = run_cli("generate", "--model", "default+poe:eos,uniform", *prompt)
    assert as_spec.returncode == 0 and as_options.returncode == 0, as_spec.stderr + as_options.stderr
    assert as_spec.stdout.strip() and as_spec.stdout == as_options.stdout
    assert as_spec.stdout != without_adapter.stdout  # the adapter in the spec was applied
    clash = run_cli("generate", "--model", "default+poe:eos", "--rules", "uniform", *prompt)
    assert clash.returncode != 0 and "name different rules" in clash.stderr
    assert len(clash.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_poe_is_the_papers_three_rules():
    """`--poe` runs the paper's headline rule set (eos-uniform-diversity); `start` only when named."""
    prompt = ("--prompt", "Name three colours.", "--max-tokens", "24")
    plain_poe = run_cli("generate", "--poe", *prompt)
    papers = run_cli("generate", "--model", "default+poe:eos,uniform,diversity", *prompt)
    with_start = run_cli("generate", "--poe", "--rules", "all", *prompt)
    assert plain_poe.returncode == papers.returncode == with_start.returncode == 0, plain_poe.stderr
    assert plain_poe.stdout.strip() and plain_poe.stdout == papers.stdout
    assert with_start.stdout.startswith("Okay") and not plain_poe.stdout.startswith("Okay")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--rules", "eos,shout"], "unknown rule 'shout'"),
        (["--model", "no/such/file.gguf"], "no such model file"),
        (["--model", "not-a-model"], "not a model name"),
        (["--adapter", "missing.gguf"], "adapter missing.gguf: no such file"),
        (["--adapter", "lora.gguf@strong"], "expected a GGUF LoRA file, path/to/adapter.gguf[@scale]"),
        (["--model", "default+lora.gguf@strong"], "unknown suffix `+lora.gguf@strong`"),
    ],
)
def test_bad_options_give_one_line(args, message):
    result = run_cli("generate", "--prompt", "hi", "--poe", *args)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_truncated_gguf_gives_one_line(tmp_path, smollm_session):
    truncated = tmp_path / "truncated.gguf"
    with open(smollm_session.model.path, "rb") as source:
        truncated.write_bytes(source.read(2_000_000))
    result = run_cli("generate", "--model", str(truncated), "--prompt", "hi")
    assert result.returncode == 1
    assert "llama.cpp cannot load this model" in result.stderr and str(truncated) in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_not_a_gguf(tmp_path):
    fake = tmp_path / "model.gguf"
    fake.write_text("hello")
    result = run_cli("chat", "--model", str(fake))
    assert result.returncode == 1 and "not a GGUF file" in result.stderr


def test_malformed_jsonl_names_file_and_line(tmp_path):
    inputs = tmp_path / "in.jsonl"
    inputs.write_text('{"instruction": "ok"}\n{"instruction": \n')
    result = run_cli("generate", "--input", str(inputs), "--out", str(tmp_path / "o.jsonl"))
    assert result.returncode == 1
    assert f"{inputs}:2: malformed JSON" in result.stderr


def test_bad_rules_config(tmp_path):
    config = tmp_path / "rules.toml"
    config.write_text("[eos\n")
    result = run_cli("generate", "--prompt", "hi", "--rules-config", str(config))
    assert result.returncode == 1 and "bad TOML" in result.stderr


@pytest.mark.slow
def test_models_lists_both_embedded_models():
    result = CliRunner().invoke(cli, ["models"])
    assert result.exit_code == 0, result.output
    assert "vocab: 262144" in result.output and "architecture: gemma3" in result.output
    assert "vocab: 49152" in result.output and "architecture: llama" in result.output


def hub_env(tmp_path, smollm_path):
    """A Hugging Face cache laid out as huggingface_hub writes it, holding one GGUF; hub offline."""
    repo = tmp_path / "hub" / "models--someone--tiny-gguf"
    snapshot = repo / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    os.symlink(smollm_path, snapshot / "model.Q4_1.gguf")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    return {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}


@pytest.mark.slow
def test_hub_repo_id_resolves_through_the_hub_cache(tmp_path, smollm_session):
    env = hub_env(tmp_path, smollm_session.model.path)
    base = [sys.executable, "-m", "ijt_local", "generate", "--max-tokens", "8", "--prompt", "hi", "--model"]
    found = subprocess.run(
        base + ["someone/tiny-gguf:model.Q4_1.gguf"], env=env, capture_output=True, text=True, timeout=120
    )
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip()
    missing = subprocess.run(
        base + ["someone/tiny-gguf:other.gguf"], env=env, capture_output=True, text=True, timeout=120
    )
    assert missing.returncode == 1
    assert "not in the local Hugging Face cache" in missing.stderr


@pytest.mark.slow
def test_corrupt_cached_default_model_is_rebuilt(tmp_path, monkeypatch, gemma_session):
    from ijt_local import models

    monkeypatch.setenv("IJT_LOCAL_HOME", str(tmp_path))
    target = tmp_path / gemma_session.model.path.name
    shutil.copyfile(gemma_session.model.path, target)
    with open(target, "r+b") as handle:  # flip bytes in the middle: same size, wrong content
        handle.seek(50_000_000)
        handle.write(b"\0" * 64)
    assert models.resolve_model("default").path == target
    assert models.file_sha256(target) == models.GEMMA_SHA256


def test_a_verb_missing_an_extra_names_the_install_line(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def without_torch(name, *args, **kwargs):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_torch)
    result = CliRunner().invoke(cli, ["train", "--base", "default", "--data", "x.jsonl", "--out", "runs/x"])
    assert result.exit_code == 1
    assert "this needs torch, which the plain install leaves out: pip install 'ijt-local[train]'" in result.output


def test_the_command_loads_a_verbs_libraries_only_when_the_verb_runs():
    """`ijt-local --help` (and every verb's registration) imports no numpy, llama.cpp, web or torch module."""
    import subprocess
    import sys

    heavy = ("numpy", "llama_cpp", "pydantic", "fastapi", "torch", "transformers")
    code = f"import sys, ijt_local.cli; print([m for m in {heavy!r} if m in sys.modules])"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"
