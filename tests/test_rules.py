"""The rule expert's effect on a logits vector, for both real vocabularies."""

from __future__ import annotations

import numpy as np
import pytest

from ijt_local.errors import UserError
from ijt_local.rules.expert import DEFAULT_RULES, RuleExpert, load_rules, parse_rule_spec, rule_spec_text
from ijt_local.rules.poe import poe_logprob


def expert_for(session, spec=None, **kwargs):
    return RuleExpert(load_rules(spec, **kwargs), session.vocabulary())


def single_token(session, text):
    ids = session.tokenize(text, special=False)
    assert len(ids) == 1, (text, ids)
    return ids[0]


@pytest.mark.slow
def test_default_words_all_resolve(real_session):
    assert expert_for(real_session).unresolved == set()


@pytest.mark.slow
def test_uniform_shifts_exactly_the_listed_words(real_session):
    expert = expert_for(real_session, "uniform")
    scores = expert.start().scores()
    assert scores[single_token(real_session, " should")] == -6.0
    assert scores[single_token(real_session, " I")] == -5.0
    assert scores[single_token(real_session, "\n")] == 1.0
    assert scores[single_token(real_session, " the")] == 0.0
    # only a few dozen entries of the whole vocabulary are touched
    assert 10 <= np.count_nonzero(scores) <= 60


@pytest.mark.slow
def test_eos_ramp_hold_and_late_bonus(real_session):
    expert = expert_for(real_session, "eos")
    state = expert.start()
    eos = real_session.eos_id
    seen = {}
    for n in range(1100):
        seen[n] = state.scores()[eos]
        state.accept(0)
    assert seen[0] == 0.0
    assert seen[125] == pytest.approx(7.5)
    assert seen[249] == pytest.approx(15 * 249 / 250)
    assert seen[250] == seen[1000] == pytest.approx(15.0)
    assert seen[1025] == pytest.approx(115.0)
    # nothing but EOS moves
    assert np.count_nonzero(state.scores()) == 1


@pytest.mark.slow
def test_paper_exact_drops_the_eos_bonus_after_the_ramp(real_session):
    config = load_rules("eos", paper_exact=True)
    assert [config.eos_bonus(n) for n in (100, 249, 250, 2000)] == pytest.approx([6.0, 14.94, 0.0, 0.0])
    assert config.describe()["paper_exact"] is True


@pytest.mark.slow
def test_diversity_penalises_instruction_and_response_tokens_once(real_session):
    expert = expert_for(real_session, "diversity")
    instruction = real_session.tokenize("Describe the ocean", special=False)
    state = expert.start(instruction)
    scores = state.scores()
    assert all(scores[t] == -1.5 for t in instruction)
    fresh = single_token(real_session, " banana")
    assert scores[fresh] == 0.0
    state.accept(fresh)
    state.accept(fresh)  # a token already seen is not penalised twice
    assert state.scores()[fresh] == -1.5
    assert np.count_nonzero(state.scores()) == len(set(instruction)) + 1


@pytest.mark.slow
def test_start_rule_shapes_the_first_three_tokens(real_session):
    expert = expert_for(real_session, "start")
    state = expert.start()
    first = state.scores()
    assert first[single_token(real_session, "Okay")] == 50.0
    assert first[single_token(real_session, "I")] == -15.0
    assert first[single_token(real_session, "The")] == 5.0
    assert first[single_token(real_session, ",")] == -5.0
    state.accept(single_token(real_session, "Okay"))
    second = state.scores()
    assert second[single_token(real_session, "!")] == 15.0
    assert np.count_nonzero(second) <= 4
    state.accept(single_token(real_session, "!"))
    assert state.scores()[single_token(real_session, "\n")] == -10.0
    state.accept(single_token(real_session, "\n"))
    assert np.count_nonzero(state.scores()) == 0


@pytest.mark.slow
def test_apply_adds_in_place_what_scores_reports(real_session):
    expert = expert_for(real_session)
    state = expert.start(real_session.tokenize("Hello there", special=False))
    logits = np.random.default_rng(0).normal(size=real_session.n_vocab).astype(np.float32)
    expected = logits + state.scores()
    state.apply(logits)
    np.testing.assert_allclose(logits, expected, rtol=0, atol=1e-5)


@pytest.mark.slow
def test_ablation_switches_turn_rules_off(real_session):
    for name in ("eos", "uniform", "diversity", "start"):
        others = ",".join(r for r in ("eos", "uniform", "diversity", "start") if r != name)
        assert name not in load_rules(others).enabled
    nothing = expert_for(real_session, "eos")
    assert np.count_nonzero(nothing.static) == 0 and not nothing.start_vectors
    assert parse_rule_spec("eos-uniform-diversity") == {"eos", "uniform", "diversity"}


def test_poe_logprob_is_normalised():
    logits = np.array([1.0, 2.0, 3.0], dtype=np.float32)
    scores = np.array([0.0, 0.0, -100.0], dtype=np.float32)
    total = sum(np.exp(poe_logprob(logits, scores, t)) for t in range(3))
    assert total == pytest.approx(1.0)
    assert np.exp(poe_logprob(logits, scores, 1)) == pytest.approx(np.exp(2) / (np.exp(1) + np.exp(2)), rel=1e-4)


@pytest.mark.slow
def test_config_file_overrides_words_and_weights(tmp_path, real_session):
    config = tmp_path / "rules.toml"
    config.write_text(
        'rules = ["uniform", "diversity"]\n[uniform.words]\n"banana" = 7.0\n[diversity]\npenalty = -3.0\n'
    )
    rules = load_rules(config_path=config)
    assert rules.enabled == {"uniform", "diversity"}
    expert = RuleExpert(rules, real_session.vocabulary())
    state = expert.start([single_token(real_session, " the")])
    scores = state.scores()
    assert scores[single_token(real_session, " banana")] == 7.0
    assert scores[single_token(real_session, " should")] == -6.0  # defaults kept
    assert scores[single_token(real_session, " the")] == -3.0


@pytest.mark.parametrize(
    "text, message",
    [
        ("[uniform\n", "bad TOML"),
        ("[eos]\nmax_bonus = 'lots'\n", "'eos.max_bonus' must be float"),
        ("[eos]\nramp = 10\n", "unknown setting 'eos.ramp'"),
        ('rules = ["eos", "nope"]\n', "unknown rule 'nope'"),
    ],
)
def test_bad_config_is_one_clear_error(tmp_path, text, message):
    config = tmp_path / "rules.toml"
    config.write_text(text)
    with pytest.raises(UserError, match=message):
        load_rules(config_path=config)


def test_unknown_rule_name():
    with pytest.raises(UserError, match="unknown rule 'length'"):
        parse_rule_spec("eos,length")


def test_the_default_set_is_the_papers_headline_run():
    # john-hewitt/implicit-ins: `--add_rule_based_helper eos-uniform-diversity`; start only when named
    assert load_rules().enabled == parse_rule_spec("eos-uniform-diversity") == DEFAULT_RULES
    assert "start" not in load_rules().enabled
    assert parse_rule_spec("all") == {"eos", "uniform", "diversity", "start"}
    assert parse_rule_spec("eos,uniform,diversity,start") == parse_rule_spec("all")
    assert rule_spec_text(parse_rule_spec("diversity-eos")) == "eos,diversity"


@pytest.mark.parametrize("spec", ["", " , ", "-"])
def test_an_empty_rule_list_names_the_valid_ones(spec):
    with pytest.raises(UserError, match="empty rule list .* eos, uniform, diversity, start, or all"):
        parse_rule_spec(spec)
