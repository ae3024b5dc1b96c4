"""`ijt-local train` end to end on tiny random llama and gemma3 models: overfitting, resume, outputs, errors."""

from __future__ import annotations

import csv
import json

import pytest

torch = pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402

from ijt_local.cli import cli  # noqa: E402
from ijt_local.errors import UserError  # noqa: E402
from ijt_local.prompts import TULU  # noqa: E402
from ijt_local.train.lora import TrainConfig, train_lora  # noqa: E402

PAIRS = [
    ("Name a colour.", "Blue like the sea."),
    ("Count to three.", "One, two, three."),
    ("Say hello.", "Hello there, friend!"),
    ("What is two plus two?", "Two plus two is four."),
    ("Name a fruit.", "A ripe yellow banana."),
    ("Give me a number.", "Forty-two, of course."),
    ("Name an animal.", "The quick brown fox."),
    ("Pick a day.", "Sunday morning."),
]


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny matrices: thread start-up costs more than it gains, badly so on a busy 2-core machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    from tiny_models import make_tiny_llama

    return make_tiny_llama(tmp_path_factory.mktemp("llama"))


@pytest.fixture(scope="module")
def tiny_gemma3(tmp_path_factory):
    from tiny_models import make_tiny_gemma3

    return make_tiny_gemma3(tmp_path_factory.mktemp("gemma3"))


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps({"instruction": q, "output": a}) + "\n" for q, a in PAIRS))
    return path


def config(base, data, out, **overrides) -> TrainConfig:
    settings = dict(
        base=str(base),
        data=str(data),
        out=str(out),
        epochs=1,
        lr=2e-3,
        rank=8,
        alpha=16,
        dropout=0.0,
        max_seq_len=64,
        batch_size=4,
        seed=0,
        device="cpu",
        dtype="float32",
        save_steps=2,
        progress=False,
    )
    settings.update(overrides)
    return TrainConfig(**settings)


def greedy_reply(model, tokenizer, instruction: str, max_new_tokens: int = 16) -> str:
    from ijt_local.train.data import special_prefix

    prompt = TULU.render([{"role": "user", "content": instruction}])
    ids = special_prefix(tokenizer) + tokenizer(prompt, add_special_tokens=False)["input_ids"]
    model.eval()
    with torch.no_grad():
        out = model.generate(
            input_ids=torch.tensor([ids]),
            attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    return tokenizer.decode(out[0, len(ids) :], skip_special_tokens=True)


@pytest.mark.parametrize("arch", ["tiny_llama", "tiny_gemma3"])
def test_overfit_eight_examples(arch, data, tmp_path, request):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = request.getfixturevalue(arch)
    manifest = train_lora(
        config(base, data, tmp_path / "run", epochs=40, lr=1e-2, rank=16, alpha=32, batch_size=8, save_steps=1000)
    )
    results = manifest["results"]
    assert results["steps"] == 40
    assert results["final_train_loss"] < 0.5 * results["first_train_loss"]

    tokenizer = AutoTokenizer.from_pretrained(base)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), tmp_path / "run")
    replies = {q: greedy_reply(model, tokenizer, q) for q, _ in PAIRS}
    reproduced = [q for q, a in PAIRS if replies[q].strip() == a]
    assert reproduced, replies


def read_curve(path):
    with path.open() as handle:
        return [row for row in csv.DictReader(handle)]


class InterruptAfterSave:
    """A Trainer callback that stops the process (as Ctrl-C would) right after checkpoint `step`."""

    def __init__(self, step):
        from transformers import TrainerCallback

        self.step = step
        self.__class__ = type("InterruptAfterSaveCallback", (InterruptAfterSave, TrainerCallback), {})

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt


def test_resume_reproduces_the_uninterrupted_curve(tiny_gemma3, data, tmp_path):
    settings = dict(epochs=3, batch_size=2, dropout=0.1, save_steps=3)  # 12 steps, 3 epochs
    whole = train_lora(config(tiny_gemma3, data, tmp_path / "whole", **settings))

    with pytest.raises(KeyboardInterrupt):
        train_lora(config(tiny_gemma3, data, tmp_path / "split", **settings), callbacks=[InterruptAfterSave(6)])
    assert not (tmp_path / "split" / "adapter_model.safetensors").exists()
    assert len(read_curve(tmp_path / "split" / "loss_curve.csv")) == 6  # curve written at the checkpoint
    with pytest.raises(UserError, match="pass --resume"):
        train_lora(config(tiny_gemma3, data, tmp_path / "split", **settings))
    resumed = train_lora(config(tiny_gemma3, data, tmp_path / "split", resume=True, **settings))

    assert resumed["results"]["resumed_from"].endswith("checkpoint-6")
    assert resumed["results"]["steps"] == whole["results"]["steps"] == 12
    full = [float(r["loss"]) for r in read_curve(tmp_path / "whole" / "loss_curve.csv")]
    pieced = [float(r["loss"]) for r in read_curve(tmp_path / "split" / "loss_curve.csv")]
    assert len(full) == len(pieced) == 12
    assert pieced == pytest.approx(full, rel=1e-4)
    assert resumed["results"]["tokens_seen"] == whole["results"]["tokens_seen"]


def test_outputs_and_manifest(tiny_llama, data, tmp_path):
    val = tmp_path / "val.jsonl"
    val.write_text(
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": "Name a colour."},
                    {"role": "assistant", "content": "Blue like the sea."},
                ]
            }
        )
        + "\n"
    )
    out = tmp_path / "run"
    manifest = train_lora(config(tiny_llama, data, out, val=str(val), epochs=2))
    names = {p.name for p in out.iterdir()}
    assert {
        "adapter_config.json",
        "adapter_model.safetensors",
        "run.json",
        "loss_curve.csv",
        "loss_curve.png",
        "checkpoints",
    } <= names
    assert not [n for n in names if n.startswith(".")]
    on_disk = json.loads((out / "run.json").read_text())
    assert on_disk == json.loads(json.dumps(manifest, default=str))
    assert manifest["base"]["kind"] == "hf_dir" and len(manifest["base"]["sha256"]) == 64
    assert manifest["base"]["architecture"] == "llama"
    assert manifest["data"]["rows"] == 8 and len(manifest["data"]["sha256"]) == 64
    assert manifest["args"]["rank"] == 8 and manifest["versions"]["peft"]
    results = manifest["results"]
    assert results["steps"] == 4 and results["final_val_loss"] is not None
    assert len(results["epoch_mean_train_loss"]) == 2 and len(results["val_loss_per_epoch"]) == 2
    assert results["tokens_per_second"] > 0
    curve = read_curve(out / "loss_curve.csv")
    assert [r["step"] for r in curve if r["val_loss"]] == ["2", "4"]
    assert (out / "loss_curve.png").read_bytes()[:4] == b"\x89PNG"
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["r"] == 8 and set(adapter["target_modules"]) == set(manifest["lora"]["target_modules"])


def test_cli_train_and_bad_input(tiny_llama, data, tmp_path):
    runner = CliRunner()
    out = tmp_path / "run"
    done = runner.invoke(
        cli,
        [
            "train",
            "--base",
            str(tiny_llama),
            "--data",
            str(data),
            "--out",
            str(out),
            "--max-steps",
            "2",
            "--device",
            "cpu",
            "--dtype",
            "float32",
            "--max-seq-len",
            "64",
        ],
    )
    assert done.exit_code == 0, done.output
    summary = done.output[done.output.index('{"out"') :].splitlines()[0]  # after the progress bar's \r
    assert json.loads(summary)["steps"] == 2

    def fails(args, message):
        result = runner.invoke(cli, ["train", *args])
        assert result.exit_code == 1, result.output
        assert message in result.output and "Traceback" not in result.output
        assert len(result.output.strip().splitlines()) == 1, result.output

    fresh = str(tmp_path / "fresh")
    fails(
        ["--base", "nobody/no-such-model", "--data", str(data), "--out", fresh],
        "--base nobody/no-such-model: cannot download from the Hugging Face hub",
    )
    fails(["--base", str(tmp_path / "nowhere"), "--data", str(data), "--out", fresh], "--base")
    fails(["--base", str(tmp_path), "--data", str(data), "--out", fresh], "not a Hugging Face model folder")
    fails(["--base", str(tiny_llama), "--data", str(tmp_path / "missing.jsonl"), "--out", fresh], "no such data file")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    fails(["--base", str(tiny_llama), "--data", str(empty), "--out", fresh], "empty.jsonl: no training rows")
    fails(["--base", str(tiny_llama), "--data", str(data), "--out", fresh, "--max-seq-len", "4"], "too short")
    fails(["--base", str(tiny_llama), "--data", str(data), "--out", str(out)], "pass --resume")
    fails(["--base", str(tiny_llama), "--data", str(data), "--out", fresh, "--rank", "0"], "--rank must be")
    assert not (tmp_path / "fresh" / "adapter_model.safetensors").exists()


def test_out_of_memory_is_one_clear_line(tiny_llama, data, tmp_path, monkeypatch):
    from ijt_local.train import trainer as trainer_module

    def exhausted(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(trainer_module, "labelled_loss_sum", exhausted)
    with pytest.raises(UserError, match="out of memory on cpu at batch size 4 x 64 tokens: lower --batch-size"):
        train_lora(config(tiny_llama, data, tmp_path / "run"))


def test_gradient_accumulation_matches_the_larger_batch(tiny_llama, data, tmp_path):
    """2 x 2 accumulated examples give the loss and gradient of one batch of 4: each micro-batch's loss is
    divided by the labelled-token count of the whole window, not by its own."""
    one = train_lora(config(tiny_llama, data, tmp_path / "one", max_steps=1, batch_size=4))
    two = train_lora(config(tiny_llama, data, tmp_path / "two", max_steps=1, batch_size=2, grad_accum=2))
    first = [read_curve(tmp_path / name / "loss_curve.csv")[0] for name in ("one", "two")]
    assert float(first[1]["loss"]) == pytest.approx(float(first[0]["loss"]), rel=1e-5)
    assert float(first[1]["grad_norm"]) == pytest.approx(float(first[0]["grad_norm"]), rel=1e-4)
    assert one["results"]["tokens_seen"] == two["results"]["tokens_seen"]


def test_bfloat16_base_with_float32_lora_learns(tiny_gemma3, data, tmp_path):
    """The half-precision path (bf16 base, fp32 LoRA weights under autocast) trains and saves fp32 LoRA."""
    from safetensors.torch import load_file

    manifest = train_lora(
        config(tiny_gemma3, data, tmp_path / "run", dtype="bfloat16", epochs=10, lr=1e-2, batch_size=8, save_steps=1000)
    )
    assert manifest["dtype"] == "bfloat16"
    assert manifest["results"]["final_train_loss"] < 0.7 * manifest["results"]["first_train_loss"]
    weights = load_file(tmp_path / "run" / "adapter_model.safetensors")
    assert weights and all(w.dtype == torch.float32 for w in weights.values())
