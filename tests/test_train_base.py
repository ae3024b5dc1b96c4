"""`--base` resolution and loading: HF folders, GGUF files (dequantized once, cached), bad specs."""

from __future__ import annotations

import hashlib
import json

import pytest

torch = pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402

from ijt_local.cli import cli  # noqa: E402
from ijt_local.errors import UserError  # noqa: E402
from ijt_local.train.base import load_base_model, resolve_base  # noqa: E402


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    from tiny_models import make_tiny_llama

    return make_tiny_llama(tmp_path_factory.mktemp("llama"))


def test_gguf_base_is_dequantized_once_and_matches_its_source(tiny_llama, tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM

    monkeypatch.setenv("IJT_LOCAL_HOME", str(tmp_path / "home"))
    gguf = tmp_path / "tiny.gguf"
    done = CliRunner().invoke(
        cli, ["convert", str(tiny_llama), "--out", str(gguf), "--outtype", "f32", "--no-progress"]
    )
    assert done.exit_code == 0, done.output

    model, tokenizer, info = load_base_model(str(gguf))
    assert info["kind"] == "gguf" and info["sha256"] == hashlib.sha256(gguf.read_bytes()).hexdigest()
    assert info["architecture"] == "llama" and info["vocab_size"] == len(tokenizer)
    folder = tmp_path / "home" / "hf-from-gguf"
    assert [p.name for p in folder.iterdir()] == [f"tiny-{info['sha256'][:16]}"]
    config = json.loads((folder / f"tiny-{info['sha256'][:16]}" / "config.json").read_text())
    assert "quantization_config" not in config  # a GGUF-loaded model is marked quantized; the copy is not

    source = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    ids = torch.tensor([tokenizer("The cached copy computes what the GGUF holds.")["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, source(ids).logits, rtol=1e-5, atol=1e-5)

    gguf.write_bytes(b"")  # the second load reads the cache only (keyed by the remembered sha256)
    monkeypatch.setattr("ijt_local.train.base.check_gguf", lambda path: None)
    monkeypatch.setattr("ijt_local.train.base.file_sha256", lambda path: info["sha256"])
    _, _, again = load_base_model(str(gguf))
    assert again["hf_dir"] == info["hf_dir"]


def test_hf_folder_base(tiny_llama):
    model, tokenizer, info = load_base_model(str(tiny_llama), dtype=torch.bfloat16)
    assert info["kind"] == "hf_dir" and len(info["sha256"]) == 64
    assert next(model.parameters()).dtype == torch.bfloat16 and not model.training
    assert tokenizer.pad_token_id is not None


@pytest.mark.parametrize(
    "spec, message",
    [
        ("no/such/thing", "not `default`, a GGUF file"),
        ("./missing.gguf", "no such model file"),
    ],
)
def test_bad_base_specs(spec, message):
    with pytest.raises(UserError, match=message):
        resolve_base(spec)


def test_a_file_that_is_not_gguf(tmp_path):
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"PK\x03\x04 not a gguf")
    with pytest.raises(UserError, match="not a GGUF file"):
        resolve_base(str(fake))
