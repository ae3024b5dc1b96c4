"""Multi-turn conversations: the turn-2 copy metric, `turns` rows and their bad input, the history window,
and the rule state a reply in a conversation starts from. Pure functions and a small synthetic vocabulary,
plus the small real tokenizer for the Session's seeding."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from ijt_local.cli import cli
from ijt_local.errors import UserError
from ijt_local.eval.generations import cached_rows
from ijt_local.eval.metrics import METRIC_NAMES, behaviour_metrics, copy_overlap, is_turn2_copy, metric_names
from ijt_local.eval.prompt_sets import load_prompts
from ijt_local.prompts import MAX_TURNS, recent_turns
from ijt_local.rules.expert import RuleExpert, Vocabulary, load_rules
from ijt_local.runtime.conversation import history_window

FIRST = "Okay! So, let's start with the first one. You can read books, watch movies, and listen to music."


def two_turn_row(first, second, output="fine", finish="stop"):
    return {
        "instruction": "q2",
        "output": output,
        "finish_reason": finish,
        "role_tag": None,
        "n_tokens": 5,
        "turns": ["q1", "q2"],
        "outputs": [first, second],
    }


# ---- metric -------------------------------------------------------------------------------------------


def test_copy_overlap_is_the_share_of_the_second_reply_found_in_the_first():
    assert copy_overlap(FIRST, FIRST) == 1.0
    assert copy_overlap(FIRST, "The capital of France is Paris.") == 0.0
    # opens the same way, then answers its own question: 3 of 9 3-grams ("let's" is two words)
    second = "Okay! So, let's start. The capital of France is Paris."
    assert copy_overlap(FIRST, second) == pytest.approx(3 / 9)
    assert copy_overlap(FIRST, "") == 0.0
    assert copy_overlap("read books", "Read books!") == 1.0  # shorter than a 3-gram: the whole reply


def test_turn2_copy_threshold_is_half_of_the_second_replies_3grams():
    half = "Okay, so let's start: Paris is big."  # 3 of its 6 word 3-grams are in FIRST
    assert copy_overlap(FIRST, half) == 0.5 and is_turn2_copy(two_turn_row(FIRST, half))
    less = "Okay, so let's... Paris is big."  # 2 of 5
    assert copy_overlap(FIRST, less) == 0.4 and not is_turn2_copy(two_turn_row(FIRST, less))
    assert is_turn2_copy(two_turn_row(FIRST, FIRST + " And more."))
    assert not is_turn2_copy(two_turn_row(FIRST, "Paris is the capital of France, on the Seine."))


def test_turn2_copy_rate_only_for_files_with_turns():
    single = [{"instruction": "a", "output": "A", "finish_reason": "stop", "role_tag": None, "n_tokens": 1}]
    assert list(behaviour_metrics(single)) == list(METRIC_NAMES)
    rows = single + [two_turn_row(FIRST, FIRST), two_turn_row(FIRST, "Paris."), two_turn_row(FIRST, "Tokyo.")]
    metrics = behaviour_metrics(rows)
    assert metrics["turn2_copy_rate"] == pytest.approx(1 / 3)  # over the three two-turn rows only
    assert metric_names(metrics) == list(METRIC_NAMES) + ["turn2_copy_rate"]
    assert metrics["stop_rate"] == 1.0


# ---- turns rows and bad input ------------------------------------------------------------------------


def write(tmp_path, rows, name="t.jsonl"):
    path = tmp_path / name
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_turns_rows_load_with_the_last_turn_as_instruction(tmp_path):
    path = write(
        tmp_path,
        [
            {"id": "a", "turns": ["Name a fruit.", "Now in French."], "kind": "followup"},
            {"instruction": "Name a color."},
        ],
    )
    prompts = load_prompts(path)
    assert prompts[0].turns == ("Name a fruit.", "Now in French.")
    assert prompts[0].instruction == "Now in French."
    assert prompts[1].turns is None and prompts[1].instruction == "Name a color."


@pytest.mark.parametrize(
    "row, message",
    [
        ({"turns": []}, f"1 to {MAX_TURNS} user messages (got 0)"),
        ({"turns": ["q"] * (MAX_TURNS + 1)}, f"(got {MAX_TURNS + 1})"),
        ({"turns": "one question"}, "(got str)"),
        ({"turns": ["fine", 3]}, "`turns` item 2 must be a non-empty string"),
        ({"turns": ["fine", "  "]}, "`turns` item 2 must be a non-empty string"),
        ({"turns": ["a"], "instruction": "b"}, "`turns` or `instruction`, not both"),
    ],
)
def test_bad_turns_rows_name_file_and_line(tmp_path, row, message):
    path = write(tmp_path, [{"turns": ["ok", "ok too"]}, "", row])  # a blank line: the bad row is line 3
    with pytest.raises(UserError, match=f"t.jsonl:3: .*{__import__('re').escape(message)}"):
        load_prompts(path)
    result = CliRunner().invoke(cli, ["generate", "--input", str(path), "--out", str(tmp_path / "o.jsonl")])
    assert result.exit_code == 1 and "t.jsonl:3: " in result.output and message in result.output
    assert "Traceback" not in result.output


def test_cached_rows_are_stale_when_the_turns_change(tmp_path):
    old = write(tmp_path, [{"id": "a", "turns": ["Name a fruit.", "Now in French."]}], "old.jsonl")
    new = write(tmp_path, [{"id": "a", "turns": ["Name a color.", "Now in French."]}], "new.jsonl")
    cache = tmp_path / "cache.jsonl"
    cache.write_text(
        json.dumps(
            {
                "id": "a",
                "instruction": "Now in French.",
                "output": "x",
                "turns": ["Name a fruit.", "Now in French."],
                "outputs": ["y", "x"],
            }
        )
        + "\n"
    )
    assert list(cached_rows(cache, load_prompts(old))) == ["a"]
    assert list(cached_rows(cache, load_prompts(new))) == []


# ---- history window ----------------------------------------------------------------------------------


def conversation(exchanges):
    messages = []
    for k in range(exchanges):
        messages += [{"role": "user", "content": f"q{k}"}, {"role": "assistant", "content": f"a{k}"}]
    return messages + [{"role": "user", "content": "now"}]


def test_recent_turns_keeps_the_last_n_exchanges():
    messages = conversation(3)
    assert recent_turns(messages, None) == messages
    assert recent_turns(messages, 0) == [{"role": "user", "content": "now"}]
    assert [m["content"] for m in recent_turns(messages, 1)] == ["q2", "a2", "now"]
    assert recent_turns(messages, 5) == messages


def test_history_window_option_then_rules_then_all():
    rules = load_rules()
    assert history_window(None) is None  # no rule expert: the whole conversation
    assert history_window(rules) == rules.history_turns
    assert history_window(rules, 2) == 2 and history_window(None, 0) == 0
    assert history_window(rules, -1) is None
    assert history_window(load_rules(paper_exact=True)) is None  # the paper's rules: the whole conversation


# ---- rule state in a conversation -------------------------------------------------------------------

PIECES = ["<eos>", "Okay", "!", " So", ",", " let", "'s", " start", " Paris", " is", " the", " capital", "\n"]


def small_expert(tmp_path, earlier=-1.5, copy=-5.0, n=3, spec="diversity", paper_exact=None):
    config = tmp_path / "rules.toml"
    config.write_text(f"[conversation]\nearlier_replies = {earlier}\ncopy_penalty = {copy}\ncopy_ngram = {n}\n")
    return RuleExpert(load_rules(spec, config, paper_exact), Vocabulary(PIECES, 0))


def ids(*pieces):
    return [PIECES.index(p) for p in pieces]


def test_earlier_reply_tokens_get_their_score_once(tmp_path):
    expert = small_expert(tmp_path, copy=0.0)
    earlier = [ids("Okay", "!", " So", " So", ",")]
    state = expert.start(ids(" capital"), earlier)
    scores = state.scores()
    assert scores[ids(" So")[0]] == -1.5  # once, though it occurs twice
    assert scores[ids(" capital")[0]] == -1.5  # the instruction, as in the paper
    assert scores[ids(" Paris")[0]] == 0.0
    state.accept(ids(" So")[0])  # the reply's own use adds the usual diversity penalty on top
    assert state.scores()[ids(" So")[0]] == -3.0


def test_copy_penalty_hits_the_token_that_continues_an_earlier_run(tmp_path):
    expert = small_expert(tmp_path, earlier=0.0)
    earlier = [ids("Okay", "!", " So", ",", " let", "'s", " start")]
    state = expert.start([], earlier)
    assert not state.scores().any()  # nothing matched yet
    for token in ids("Okay", "!"):
        state.accept(token)
    scores = state.scores()
    assert scores[ids(" So")[0]] == -5.0  # "Okay ! So" would copy 3 tokens of the earlier reply
    assert np.count_nonzero(scores) == 3  # that, and the reply's own diversity on "Okay" and "!"
    state.accept(ids(" Paris")[0])
    assert state.scores()[ids(" So")[0]] == 0.0  # the run is broken
    assert state.scores()[ids(" is")[0]] == 0.0


def test_paper_exact_and_no_diversity_ignore_earlier_replies(tmp_path):
    earlier = [ids("Okay", "!", " So")]
    for expert in (small_expert(tmp_path, paper_exact=True), small_expert(tmp_path, spec="eos,uniform")):
        state = expert.start([], earlier)
        for token in ids("Okay", "!"):
            state.accept(token)
        assert state.scores()[ids(" So")[0]] == 0.0


@pytest.mark.slow
def test_session_seeds_earlier_replies_of_the_window(smollm_session, tmp_path):
    config = tmp_path / "rules.toml"
    config.write_text("[conversation]\nearlier_replies = -2.0\ncopy_penalty = 0.0\n")
    rules = load_rules("diversity", config)
    reply = "Bananas"
    tokens = smollm_session.tokenize(reply, special=False)
    messages = [
        {"role": "user", "content": "Name a fruit."},
        {"role": "assistant", "content": reply},
        {"role": "user", "content": "Name a color."},
    ]
    assert (smollm_session.rule_state(rules, messages).scores()[tokens] == -2.0).all()
    assert (smollm_session.rule_state(rules, messages[2:]).scores()[tokens] == 0.0).all()
    exact = load_rules("diversity", config, paper_exact=True)
    assert (smollm_session.rule_state(exact, messages).scores()[tokens] == 0.0).all()


# ---- the real embedded models ------------------------------------------------------------------------

FIRST_QUESTION = "What are three good ways to learn a new language?"
UNRELATED = "Write a haiku about autumn rain."


def before_rules(tmp_path, spec=None):
    """The rules as they ran in conversations before the [conversation] table: full history, no penalties."""
    config = tmp_path / "before.toml"
    config.write_text("[conversation]\nhistory_turns = -1\nearlier_replies = 0.0\ncopy_penalty = 0.0\n")
    return load_rules(spec, config_path=config)


@pytest.mark.slow
@pytest.mark.parametrize("spec", [None, "all"], ids=["paper-rules", "with-start"])
def test_second_turn_does_not_copy_the_first_under_poe(gemma_session, tmp_path, spec):
    from ijt_local.runtime.conversation import generate_turns

    turns = [FIRST_QUESTION, UNRELATED]
    before = generate_turns(gemma_session, turns, before_rules(tmp_path, spec), max_tokens=48)
    after = generate_turns(gemma_session, turns, load_rules(spec), max_tokens=48)
    assert before[0].text == after[0].text  # the first turn is the paper's single-turn PoE
    if spec == "all":  # what the issue saw: the start rule opens both replies alike and the model copies on
        assert copy_overlap(before[0].text, before[1].text) >= 0.5
    assert copy_overlap(after[0].text, after[1].text) < 0.5
    assert after[1].text.strip()


def run_chat(*args, input):
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "ijt_local", "chat", *args], input=input, capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow
def test_piped_questions_are_answered_each_not_copied():
    questions = f"{FIRST_QUESTION}\n{UNRELATED}\nWhat is the capital of France?\n"
    piped = run_chat("--poe", "--max-tokens", "48", input=questions)
    alone = run_chat("--poe", "--max-tokens", "48", input=FIRST_QUESTION + "\n")
    assert piped.returncode == 0 and alone.returncode == 0, piped.stderr + alone.stderr
    assert piped.stderr.count("tok/s") == 3
    assert piped.stdout.startswith(alone.stdout)
    later = piped.stdout[len(alone.stdout) :]  # the second and third replies
    assert copy_overlap(alone.stdout, later) < 0.5


@pytest.mark.slow
def test_independent_pipe_answers_each_line_as_a_fresh_conversation():
    chat = ("--model", "smollm2-135m-instruct", "--max-tokens", "16")
    independent = run_chat(*chat, "--independent", input="My name is Ada.\nWhat is my name?\n")
    conversation = run_chat(*chat, input="My name is Ada.\nWhat is my name?\n")
    first = run_chat(*chat, input="My name is Ada.\n")
    fresh = run_chat(*chat, input="What is my name?\n")
    assert all(r.returncode == 0 for r in (independent, conversation, first, fresh))
    assert independent.stdout == first.stdout + fresh.stdout
    assert conversation.stdout != independent.stdout  # in one conversation the second reply saw the first


@pytest.mark.slow
def test_compare_answers_each_turn_and_reports_the_copy_rate(tmp_path):
    from ijt_local.eval.compare import run_compare

    prompts = write(
        tmp_path,
        [{"id": "a", "turns": ["Name a fruit.", "Now name a color."]}, {"id": "b", "instruction": "Name an animal."}],
    )
    results = run_compare(
        ["instruct=smollm2-135m-instruct"], prompts, tmp_path / "out", max_tokens=8, threads=1, log=lambda text: None
    )
    metrics = results["models"]["instruct"]["metrics"]
    assert metric_names(metrics) == list(METRIC_NAMES) + ["turn2_copy_rate"]
    cache = tmp_path / "out" / "generations" / "instruct.jsonl"
    rows = {row["id"]: row for row in map(json.loads, cache.read_text().splitlines())}  # in finishing order
    assert rows["a"]["turns"] == ["Name a fruit.", "Now name a color."] and len(rows["a"]["outputs"]) == 2
    assert rows["a"]["output"] == rows["a"]["outputs"][1] and rows["a"]["instruction"] == "Now name a color."
    assert "outputs" not in rows["b"]
    assert "[turn 2] Now name a color." in (tmp_path / "out" / "report.html").read_text()
