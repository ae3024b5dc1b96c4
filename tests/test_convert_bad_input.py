"""Bad input to merge / convert / quantize / export-adapter: one clear line naming the problem, exit
status 1 from the CLI, and never a .gguf (or a temporary file) left behind."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from click.testing import CliRunner
from tiny_models import make_tiny_gemma3, make_tiny_llama

from ijt_local.cli import cli
from ijt_local.convert.export_adapter import export_adapter
from ijt_local.convert.hf_to_gguf import convert
from ijt_local.convert.merge import merge
from ijt_local.convert.parity import random_lora_adapter
from ijt_local.convert.quantize import quantize_gguf
from ijt_local.errors import UserError


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    return make_tiny_llama(tmp_path_factory.mktemp("bad") / "llama")


@pytest.fixture
def copy(llama_dir, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(llama_dir, folder)
    return folder


def _edit_config(folder, **changes):
    path = folder / "config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


def _rewrite_weights(folder, edit):
    from safetensors.numpy import load_file, save_file

    weights = load_file(folder / "model.safetensors")
    edit(weights)
    save_file(weights, folder / "model.safetensors")


def _refused(folder, out, match, **kwargs):
    with pytest.raises(UserError, match=match) as caught:
        convert(folder, out, "f16", progress=False, **kwargs)
    assert "\n" not in str(caught.value)
    assert not out.is_file()
    assert not out.parent.exists() or not [p for p in out.parent.iterdir() if ".tmp-" in p.name]
    return str(caught.value)


def test_unknown_architecture_is_refused_by_name(copy, tmp_path):
    _edit_config(copy, model_type="gpt2", architectures=["GPT2LMHeadModel"])
    message = _refused(copy, tmp_path / "out.gguf", "architecture 'gpt2' is not supported")
    assert "llama" in message and "qwen2" in message and "gemma3" in message


def test_multimodal_gemma3_is_pointed_to_its_text_model(copy, tmp_path):
    _edit_config(copy, model_type="gemma3", architectures=["Gemma3ForConditionalGeneration"])
    _refused(copy, tmp_path / "out.gguf", "Gemma3ForCausalLM")


def test_missing_tensor(copy, tmp_path):
    _rewrite_weights(copy, lambda w: w.pop("model.layers.1.mlp.down_proj.weight"))
    _refused(copy, tmp_path / "out.gguf", "missing tensor model.layers.1.mlp.down_proj.weight")


def test_unexpected_tensor(copy, tmp_path):
    import numpy as np

    _rewrite_weights(copy, lambda w: w.update({"model.layers.0.mystery.weight": np.zeros((4, 4), np.float32)}))
    _refused(copy, tmp_path / "out.gguf", "unexpected tensor model.layers.0.mystery.weight")


def test_shape_mismatch_names_tensor_and_shapes(copy, tmp_path):
    _edit_config(copy, intermediate_size=256)
    message = _refused(copy, tmp_path / "out.gguf", r"mlp\.(gate|up|down)_proj\.weight has shape")
    assert "256" in message


def test_dtype_mismatch(copy, tmp_path):
    _rewrite_weights(copy, lambda w: w.update({"model.norm.weight": w["model.norm.weight"].astype("int32")}))
    _refused(copy, tmp_path / "out.gguf", "model.norm.weight has dtype I32")


def test_truncated_weights_leave_nothing_behind(copy, tmp_path):
    path = copy / "model.safetensors"
    with path.open("r+b") as handle:
        handle.truncate(path.stat().st_size - 4096)
    _refused(copy, tmp_path / "out.gguf", "truncated data|bytes for shape")


def test_missing_tokenizer(copy, tmp_path):
    (copy / "tokenizer.json").unlink()
    _refused(copy, tmp_path / "out.gguf", "no tokenizer.json or tokenizer.model")


def test_pre_tokenizer_llama_cpp_cannot_reproduce(copy, tmp_path):
    path = copy / "tokenizer.json"
    data = json.loads(path.read_text())
    data["pre_tokenizer"] = {
        "type": "Sequence",
        "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": r"\w+|\s+"}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
        ],
    }
    path.write_text(json.dumps(data))
    _refused(copy, tmp_path / "out.gguf", "pre-tokenizer")


def test_unwritable_outputs(llama_dir, tmp_path):
    (tmp_path / "a-dir").mkdir()
    _refused(llama_dir, tmp_path / "a-dir", "is a directory")
    _refused(llama_dir, tmp_path / "missing" / "out.gguf", "does not exist")
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        try:
            _refused(llama_dir, locked / "out.gguf", "permission denied")
        finally:
            locked.chmod(0o700)


def test_existing_output_is_replaced_only_on_success(llama_dir, copy, tmp_path):
    out = tmp_path / "keep.gguf"
    out.write_bytes(b"GGUF old")
    _rewrite_weights(copy, lambda w: w.pop("model.norm.weight"))
    with pytest.raises(UserError):
        convert(copy, out, "f16", progress=False)
    assert out.read_bytes() == b"GGUF old"


def test_quantize_bad_inputs(llama_dir, tmp_path):
    with pytest.raises(UserError, match="quantization type Q9_Z: choose one of"):
        quantize_gguf(tmp_path / "in.gguf", tmp_path / "out.gguf", "Q9_Z")
    not_gguf = tmp_path / "in.gguf"
    not_gguf.write_text("hello")
    with pytest.raises(UserError, match="not a GGUF file"):
        quantize_gguf(not_gguf, tmp_path / "out.gguf", "Q4_K_M")
    good = tmp_path / "good.gguf"
    convert(llama_dir, good, "f32", progress=False)
    with pytest.raises(UserError, match="must differ"):
        quantize_gguf(good, good, "Q8_0")
    with pytest.raises(UserError, match="quantization type Q4_K_Q"):
        convert(llama_dir, tmp_path / "q.gguf", "f16", quantize="Q4_K_Q", progress=False)
    assert not (tmp_path / "out.gguf").exists() and not (tmp_path / "q.gguf").exists()


@pytest.fixture(scope="module")
def foreign_adapter(tmp_path_factory, llama_dir):
    """A LoRA trained on the tiny llama, plus a tiny gemma3 (different k/v widths) as a wrong base."""
    root = tmp_path_factory.mktemp("foreign")
    adapter = random_lora_adapter(llama_dir, root / "llama-adapter")
    gemma = make_tiny_gemma3(root / "gemma3")
    gemma_gguf = root / "gemma3.gguf"
    convert(gemma, gemma_gguf, "f32", progress=False)
    return adapter, gemma, gemma_gguf


def test_export_adapter_for_a_different_base(foreign_adapter, tmp_path):
    adapter, _, gemma_gguf = foreign_adapter
    out = tmp_path / "a.gguf"
    with pytest.raises(UserError, match="trained for a different base"):
        export_adapter(adapter, str(gemma_gguf), out)
    assert not out.exists()


def test_export_adapter_rejects_non_adapters(llama_dir, foreign_adapter, tmp_path):
    with pytest.raises(UserError, match="not a PEFT LoRA adapter folder"):
        export_adapter(llama_dir, str(foreign_adapter[2]), tmp_path / "a.gguf")
    adapter = tmp_path / "dora"
    shutil.copytree(foreign_adapter[0], adapter)
    config = json.loads((adapter / "adapter_config.json").read_text())
    config["use_dora"] = True
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    good_base = tmp_path / "llama.gguf"
    convert(llama_dir, good_base, "f32", progress=False)
    with pytest.raises(UserError, match="DoRA"):
        export_adapter(adapter, str(good_base), tmp_path / "a.gguf")
    assert not (tmp_path / "a.gguf").exists()


def test_merge_adapter_for_a_different_base(foreign_adapter, tmp_path):
    adapter, gemma, _ = foreign_adapter
    with pytest.raises(UserError, match="does not fit this base model"):
        merge(str(gemma), adapter, tmp_path / "merged")
    assert not (tmp_path / "merged").exists()


def test_merge_refuses_adapter_whose_run_names_another_base(foreign_adapter, llama_dir, tmp_path):
    adapter = tmp_path / "adapter"
    shutil.copytree(foreign_adapter[0], adapter)
    (adapter / "run.json").write_text(json.dumps({"base": {"spec": "other", "kind": "hf_dir", "sha256": "0" * 64}}))
    with pytest.raises(UserError, match="trained on base other"):
        merge(str(llama_dir), adapter, tmp_path / "merged")


def test_cli_prints_one_line_and_exits_1(llama_dir, tmp_path):
    runner = CliRunner()
    cases = [
        ["convert", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.gguf")],
        ["convert", str(llama_dir), "--out", str(tmp_path / "no" / "x.gguf")],
        ["quantize", str(tmp_path / "nothing.gguf"), str(tmp_path / "y.gguf"), "Q4_K_M"],
        ["quantize", str(tmp_path / "nothing.gguf"), str(tmp_path / "y.gguf")],
        ["export-adapter", str(tmp_path), "--base", str(tmp_path / "nothing.gguf"), "--out", str(tmp_path / "a.gguf")],
        ["merge", "--base", str(llama_dir), "--adapter", str(tmp_path / "none"), "--out", str(tmp_path / "m")],
    ]
    for args in cases:
        result = runner.invoke(cli, args)
        assert result.exit_code == 1, (args, result.output)
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
        assert "Traceback" not in result.output
    assert not list(tmp_path.glob("*.gguf"))


def test_cli_convert_writes_json_summary(llama_dir, tmp_path):
    out = tmp_path / "ok.gguf"
    result = CliRunner().invoke(
        cli, ["convert", str(llama_dir), "--out", str(out), "--outtype", "f32", "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["architecture"] == "llama" and summary["bytes"] == out.stat().st_size


def test_quantize_takes_type_after_out_and_the_old_type_option_with_a_warning(tmp_path):
    missing = [str(tmp_path / "nothing.gguf"), str(tmp_path / "y.gguf")]
    old = CliRunner().invoke(cli, ["quantize", *missing, "--type", "Q4_K_M"])
    assert old.stderr.splitlines()[0] == "warning: --type is deprecated and goes in 0.3; give TYPE after OUT"
    assert old.exit_code == 1 and "nothing.gguf" in old.stderr  # then it runs as `quantize ... Q4_K_M` does
    both = CliRunner().invoke(cli, ["quantize", *missing, "Q4_K_M", "--type", "Q8_0"])
    assert both.exit_code == 1 and both.stderr.strip() == (
        "Error: --type is the old spelling of TYPE: give TYPE once, after OUT"
    )
    bad = CliRunner().invoke(cli, ["quantize", *missing, "Q9_Z"])
    assert bad.exit_code == 1 and "quantization type Q9_Z: choose one of" in bad.stderr
