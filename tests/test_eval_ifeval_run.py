"""`ijt-local eval ifeval` end to end on a few real prompts with the instruction-tuned reference."""

import json

import pytest
from click.testing import CliRunner

from ijt_local.cli import cli


@pytest.mark.slow
def test_ifeval_on_three_prompts(tmp_path):
    out = tmp_path / "ifeval"
    args = [
        "eval",
        "ifeval",
        "--model",
        "smollm2-135m-instruct",
        "--out",
        str(out),
        "--limit",
        "3",
        "--max-tokens",
        "24",
        "--threads",
        "1",
    ]
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
    result = CliRunner().invoke(
        cli, ["eval", "ifeval", "--model", "default", "--data", str(data), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 1 and "unknown instruction 'x:y'" in result.output


def test_an_echo_of_the_prompt_passes_loose_but_not_without_echo():
    from ijt_local.eval.ifeval.run import accuracy, score_response

    row = {
        "key": 1,
        "prompt": "Write a short note to a friend about the weekend trip to the lake. The note must have "
        "a title wrapped in double angular brackets, i.e. <<title>>.",
        "instruction_id_list": ["detectable_format:title"],
        "kwargs": [{}],
    }
    echo = score_response(row, row["prompt"])
    answer = score_response(row, "<<Lake Days>>\nHi Sam, the lake was calm and we swam every morning.")
    assert echo["loose"] == [True] and echo["echo"] and not answer["echo"] and answer["loose"] == [True]
    both = accuracy([echo, answer])
    assert both["prompt_level_loose"] == 1.0 and both["prompt_level_loose_no_echo"] == 0.5
    assert both["echo_rate"] == 0.5


def test_the_prompts_themselves_pass_the_documented_share():
    """The replication report and docs/evaluation.md cite this number (ijt_local/measured.toml): echoing the
    prompt passes it loose."""
    from ijt_local.eval.ifeval.run import accuracy, default_data_path, load_ifeval, score_response
    from ijt_local.measured import ifeval_prompts_as_replies

    rows = load_ifeval(default_data_path())
    echoed = accuracy([score_response(row, row["prompt"]) for row in rows])
    assert len(rows) == 541 and round(echoed["prompt_level_loose"], 3) == ifeval_prompts_as_replies()
    assert echoed["echo_rate"] == 1.0 and echoed["prompt_level_loose_no_echo"] == 0.0
