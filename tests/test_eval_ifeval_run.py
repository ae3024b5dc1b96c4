"""`ijt-local eval ifeval` end to end on a few real prompts with the instruction-tuned reference."""

import json

import pytest
from click.testing import CliRunner

from ijt_local.cli import cli


@pytest.mark.slow
def test_ifeval_on_three_prompts(tmp_path):
    out = tmp_path / "ifeval"
    args = ["eval", "ifeval", "--model", "smollm2-135m-instruct", "--out", str(out), "--limit", "3",
            "--max-tokens", "24", "--threads", "1"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "results.json").read_text())
    acc = saved["accuracy"]
    assert acc["prompts"] == 3 and acc["instructions"] >= 3
    for key in ("prompt_level_strict", "instruction_level_strict", "prompt_level_loose", "instruction_level_loose"):
        assert 0.0 <= acc[key] <= 1.0
    assert acc["prompt_level_loose"] >= acc["prompt_level_strict"]
    assert acc["instruction_level_loose"] >= acc["instruction_level_strict"]
    scores = [json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()]
    assert [len(s["strict"]) for s in scores] == [len(s["instruction_id_list"]) for s in scores]
    assert len((out / "generations.jsonl").read_text().splitlines()) == 3
    # A rerun is answered from the cache and gives the same numbers.
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0 and json.loads((out / "results.json").read_text())["accuracy"] == acc


def test_ifeval_rejects_unknown_instructions(tmp_path):
    data = tmp_path / "bad.jsonl"
    data.write_text(json.dumps({"key": 1, "prompt": "p", "instruction_id_list": ["x:y"], "kwargs": [{}]}) + "\n")
    result = CliRunner().invoke(cli, ["eval", "ifeval", "--model", "default", "--data", str(data),
                                      "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and "unknown instruction 'x:y'" in result.output
