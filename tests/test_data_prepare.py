"""`ijt-local data prepare`: the paper's formats, from small copies of the shared data files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from ijt_local.cli import cli
from ijt_local.data.builders import parse_pgn
from ijt_local.data.prepare import build_rows, prepare
from ijt_local.errors import UserError

FIXTURES = Path(__file__).parent / "fixtures" / "data"


def rows_of(name, **kwargs):
    return list(build_rows(name, FIXTURES, **kwargs))


def turns(row):
    return [(m["role"], m["content"]) for m in row["messages"]]


def test_every_row_has_the_common_shape():
    for name in ("lima", "gsm8k", "mbpp", "poetry", "recipes", "chess"):
        rows = rows_of(name)
        assert rows, name
        ids = [row["id"] for row in rows]
        assert len(set(ids)) == len(ids)
        for row in rows:
            assert row["dataset"] == name
            assert row["messages"][0]["role"] == "user" and row["messages"][-1]["role"] == "assistant"
            assert all(m["content"] for m in row["messages"])


def test_gsm8k_is_question_then_answer():
    first = json.loads((FIXTURES / "gsm8k" / "train.jsonl").read_text().splitlines()[0])
    assert turns(rows_of("gsm8k")[0]) == [("user", first["question"]), ("assistant", first["answer"])]


def test_mbpp_keeps_the_train_split_only_and_normalises_newlines():
    rows = rows_of("mbpp")
    assert [row["id"] for row in rows] == ["mbpp_601", "mbpp_602", "mbpp_603", "mbpp_604"]
    assert all("\r" not in row["messages"][1]["content"] for row in rows)
    assert rows[0]["messages"][1]["content"].lstrip().startswith(("def ", "class ", "import ", "from "))


def test_poetry_prompt_and_skipped_untitled_poem():
    rows = rows_of("poetry")
    assert len(rows) == 6  # the fixture's seventh poem has no title
    user, poem = rows[0]["messages"][0]["content"], rows[0]["messages"][1]["content"]
    assert user.startswith("Write a poem called ") and len(user) > len("Write a poem called ")
    assert poem.startswith("Let the bird of loudest lay\nOn the sole Arabian tree")
    assert "\r" not in poem


def test_recipes_list_ingredients_then_instructions():
    rows = rows_of("recipes")
    assert len(rows) == 5  # the sixth row has no instructions
    assert rows[0]["messages"][0]["content"] == "Recipe for Hazelnut Cookies"
    reply = rows[0]["messages"][1]["content"]
    ingredients, instructions = reply.split("\n\n", 1)
    assert ingredients.splitlines()[0] == " - 1/2 cup hazelnuts (2 oz)"
    assert all(line.startswith(" - ") for line in ingredients.splitlines())
    assert instructions.startswith("Put oven rack in middle position")


def test_chess_headers_as_prompt_moves_as_reply():
    rows = rows_of("chess")
    assert len(rows) == 3  # the fixture's last game has no Elo headers
    prompt, moves = rows[0]["messages"][0]["content"], rows[0]["messages"][1]["content"]
    assert '[WhiteElo "1703"]' in prompt and '[BlackElo "1698"]' in prompt
    assert all(line.startswith("[") and line.endswith("]") for line in prompt.splitlines())
    assert moves.startswith("1. e4 c5 2. Nf3 d6 3. b3 Nc6")
    assert "clk" not in moves and "{" not in moves and "..." not in moves
    assert moves.endswith("33. Qxe6+ 1-0")


def test_parse_pgn_splits_games():
    text = '[Event "a"]\n[WhiteElo "1"]\n\n1. e4 { [%clk 0:01:00] } 1... e5 1-0\n\n[Event "b"]\n\n1. d4 0-1\n'
    assert list(parse_pgn(text)) == [
        (['[Event "a"]', '[WhiteElo "1"]'], "1. e4 e5 1-0"),
        (['[Event "b"]'], "1. d4 0-1"),
    ]


def test_lima_keeps_multi_turn_conversations():
    rows = rows_of("lima")
    assert [len(row["messages"]) for row in rows] == [2, 2, 2, 4]
    assert rows[0]["id"] == "lima_0"


def test_response_variant_drops_every_user_turn():
    for name in ("lima", "poetry", "chess"):
        instruction, response = rows_of(name), rows_of(name, variant="response")
        assert len(instruction) == len(response)
        for full, bare in zip(instruction, response):
            assert [m["role"] for m in bare["messages"]] == ["assistant"] * (len(full["messages"]) // 2)
            assert [m["content"] for m in bare["messages"]] == [
                m["content"] for m in full["messages"] if m["role"] == "assistant"
            ]
            assert bare["variant"] == "response"


def test_limit_keeps_the_first_rows():
    assert [r["id"] for r in rows_of("gsm8k", limit=2)] == ["gsm8k_0", "gsm8k_1"]


def test_from_accepts_the_file_the_folder_or_the_parent(tmp_path):
    direct = rows_of("gsm8k")
    assert list(build_rows("gsm8k", FIXTURES / "gsm8k")) == direct
    assert list(build_rows("gsm8k", FIXTURES / "gsm8k" / "train.jsonl")) == direct


def test_prepare_writes_jsonl(tmp_path):
    out = tmp_path / "sub" / "poetry.jsonl"
    assert prepare("poetry", out, from_path=FIXTURES, limit=3) == 3
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["poetry_0", "poetry_1", "poetry_2"]
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp file left


def test_malformed_jsonl_names_file_and_line(tmp_path):
    bad = tmp_path / "train.jsonl"
    bad.write_text('{"question": "q", "answer": "a"}\n{"question": \n')
    with pytest.raises(UserError, match=r"train.jsonl:2: malformed JSON"):
        list(build_rows("gsm8k", bad))


def test_missing_columns_are_named(tmp_path):
    bad = tmp_path / "train.jsonl"
    bad.write_text('{"question": "q"}\n')
    with pytest.raises(UserError, match="lacks answer"):
        list(build_rows("gsm8k", bad))


def test_missing_local_copy_is_clear(tmp_path):
    with pytest.raises(UserError, match="no poems.csv here"):
        list(build_rows("poetry", tmp_path))


def test_cli_prepare_and_its_errors(tmp_path):
    runner = CliRunner()
    out = tmp_path / "chess.jsonl"
    done = runner.invoke(
        cli, ["data", "prepare", "chess", "--from", str(FIXTURES), "--out", str(out), "--variant", "response"]
    )
    assert done.exit_code == 0, done.output
    assert "wrote 3 response rows of chess" in done.output
    assert all(json.loads(line)["messages"][0]["role"] == "assistant" for line in out.read_text().splitlines())

    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n")
    failed = runner.invoke(cli, ["data", "prepare", "gsm8k", "--from", str(bad), "--out", str(tmp_path / "x.jsonl")])
    assert failed.exit_code == 1
    assert f"{bad}:1: malformed JSON" in failed.output and "Traceback" not in failed.output
    assert len(failed.output.strip().splitlines()) == 1
    assert not (tmp_path / "x.jsonl").exists()


def test_without_from_the_data_home_folder_is_read_when_it_has_the_set(tmp_path, monkeypatch):
    monkeypatch.setenv("IJT_LOCAL_DATA", str(FIXTURES))
    out = tmp_path / "poetry.jsonl"
    done = CliRunner().invoke(cli, ["data", "prepare", "poetry", "--out", str(out), "--limit", "2"])
    assert done.exit_code == 0, done.output
    assert done.output.strip() == f"wrote 2 instruction rows of poetry to {out} (from {FIXTURES / 'poetry'})"
    assert list(build_rows("poetry")) == rows_of("poetry")


def test_offline_hub_path_says_so(tmp_path, monkeypatch):
    """Without --from and without the set in the data home the builder goes to the HF hub; with no network
    it fails at once, clearly."""
    monkeypatch.setenv("IJT_LOCAL_DATA", str(tmp_path / "empty-home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    with pytest.raises(
        UserError,
        match=r"gsm8k: cannot load openai/gsm8k: the Hugging Face hub is unreachable .*"
        r"run: ijt-local data fetch gsm8k, or pass --from PATH",
    ):
        list(build_rows("gsm8k"))
