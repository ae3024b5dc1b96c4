"""`ijt-local compare` end to end on the real embedded GGUFs (a few prompts, few tokens)."""

import json

import pytest
from click.testing import CliRunner

from ijt_local.cli import cli
from ijt_local.errors import UserError
from ijt_local.eval.compare import run_compare
from ijt_local.eval.metrics import METRIC_NAMES

pytestmark = pytest.mark.slow

MODELS = ["base=default", "poe=default+poe", "instruct=smollm2-135m-instruct"]


@pytest.fixture(scope="module")
def prompts(tmp_path_factory):
    path = tmp_path_factory.mktemp("prompts") / "prompts.jsonl"
    rows = [
        {"instruction": "Give three tips for staying healthy."},
        {"instruction": 'What does <script>alert("x")</script> do in a web page?'},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def finished(prompts, tmp_path_factory):
    out = tmp_path_factory.mktemp("compare") / "out"
    args = ["compare", "--input", str(prompts), "--out", str(out), "--max-tokens", "12", "--threads", "1"]
    for model in MODELS:
        args += ["--model", model]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    return out, result


def test_results_hold_the_five_metrics_per_model(finished, prompts):
    out, result = finished
    results = json.loads((out / "results.json").read_text())
    assert list(results["models"]) == ["base", "poe", "instruct"]
    assert results["prompts"] == {"path": str(prompts), "count": 2}  # not in the data home: its path
    for name, spec in zip(["base", "poe", "instruct"], ["default", "default+poe", "smollm2-135m-instruct"]):
        entry = results["models"][name]
        assert entry["spec"] == spec
        assert set(entry["metrics"]) == set(METRIC_NAMES)
        assert 0 < entry["metrics"]["mean_tokens"] <= 12
        assert all(0.0 <= entry["metrics"][m] <= 1.0 for m in METRIC_NAMES if m.endswith("_rate"))
    assert "stop_rate" in result.output  # the table is printed
    for name in ("base", "poe", "instruct"):
        rows = [json.loads(line) for line in (out / "generations" / f"{name}.jsonl").read_text().splitlines()]
        assert [r["id"] for r in rows] == ["0", "1"]


def test_report_is_static_with_plots_and_escaped_text(finished):
    out, _ = finished
    html = (out / "report.html").read_text()
    assert html.count('<div class="item"') == 2
    assert html.count("data:image/png;base64,") == 2
    assert "<script>" not in html and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert "http://" not in html and "https://" not in html  # nothing loaded from elsewhere
    for name in ("base", "poe", "instruct"):
        assert f"<h3>{name}<span" in html


def test_rerun_resumes_from_cache_and_escapes_cached_model_text(finished, prompts):
    out, _ = finished
    cache = out / "generations" / "instruct.jsonl"
    rows = [json.loads(line) for line in cache.read_text().splitlines()]
    rows[0]["output"] = '<img src=x onerror="alert(1)">'
    cache.write_text(json.dumps(rows[0]) + "\n")  # second row "lost": must be generated again
    log = []
    results = run_compare(MODELS, prompts, out, max_tokens=12, threads=1, log=log.append)
    assert log == ["instruct: 1 cached, generating 1 with smollm2-135m-instruct", log[1]]
    assert len(cache.read_text().splitlines()) == 2
    html = (out / "report.html").read_text()
    assert "<img src=x" not in html and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in html
    assert results["models"]["instruct"]["metrics"]["mean_tokens"] > 0


def test_other_settings_on_the_same_cache_are_refused(finished, prompts):
    out, _ = finished
    with pytest.raises(UserError, match="cached generations were made with"):
        run_compare(MODELS, prompts, out, max_tokens=13, threads=1)


@pytest.mark.parametrize(
    "content,model,message",
    [
        (None, "x=no-such-model", "no-such-model: not a model name"),
        (None, "x=default+lora.bin", "unknown suffix"),
        ("", "base=default", "no instructions (empty file)"),
        ('{"instruction": "a"}\n{"instruction": "b"\n', "base=default", "bad.jsonl:2: malformed JSON"),
        (None, "base", "expected NAME=SPEC"),
    ],
)
def test_bad_input_is_one_line_and_keeps_the_cache(finished, prompts, tmp_path, content, model, message):
    out, _ = finished
    before = {p.name: p.read_bytes() for p in (out / "generations").iterdir()}
    path = prompts
    if content is not None:
        path = tmp_path / "bad.jsonl"
        path.write_text(content)
    result = CliRunner().invoke(cli, ["compare", "--model", model, "--input", str(path), "--out", str(out)])
    assert result.exit_code == 1
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output
    assert {p.name: p.read_bytes() for p in (out / "generations").iterdir()} == before


def test_unreachable_judge_fails_in_one_line_after_writing_results(finished, prompts):
    out, _ = finished
    (out / "results.json").unlink()
    before = {p.name: p.read_bytes() for p in (out / "generations").iterdir()}
    args = [
        "compare",
        "--input",
        str(prompts),
        "--out",
        str(out),
        "--max-tokens",
        "12",
        "--threads",
        "1",
        "--judge-url",
        "http://127.0.0.1:9/v1",
    ]
    for model in MODELS:
        args += ["--model", model]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1
    assert "unreachable" in result.output and "Traceback" not in result.output
    assert (out / "results.json").exists() and (out / "report.html").exists()
    assert {p.name: p.read_bytes() for p in (out / "generations").iterdir()} == before


def test_a_json_schema_constrains_every_model_and_keys_the_cache(prompts, tmp_path):
    schema = {
        "type": "object",
        "properties": {"tip": {"type": "string", "maxLength": 40}},
        "required": ["tip"],
        "additionalProperties": False,
    }
    schema_path = tmp_path / "tip.json"
    schema_path.write_text(json.dumps(schema))
    out = tmp_path / "out"
    args = ["compare", "--input", str(prompts), "--out", str(out), "--max-tokens", "40", "--threads", "1"]
    args += ["--model", "poe=default+poe", "--model", "instruct=smollm2-135m-instruct"]
    args += ["--json-schema", str(schema_path)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert results["settings"]["constraint"]["kind"] == "json_schema"
    for name in ("poe", "instruct"):
        rows = [json.loads(line) for line in (out / "generations" / f"{name}.jsonl").read_text().splitlines()]
        complete = [row for row in rows if row["grammar_complete"]]
        assert results["models"][name]["grammar_complete"] == len(complete)
        for row in complete:  # a reply that completes the schema parses and holds to it
            reply = json.loads(row["output"])
            assert set(reply) == {"tip"} and len(reply["tip"]) <= 40
        assert all(row["output"].startswith("{") for row in rows)  # the mask held from the first token
    schema_path.write_text(json.dumps(schema | {"required": []}))  # an edited schema is another cache
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 1 and "cached generations were made with" in again.output


@pytest.mark.parametrize("inside", [True, False])
def test_a_data_home_set_is_recorded_by_its_place_there(tmp_path, monkeypatch, inside):
    from ijt_local.eval.compare import _input_name

    monkeypatch.setenv("IJT_LOCAL_DATA", str(tmp_path / "home"))
    path = (tmp_path / "home" if inside else tmp_path) / "val" / "val.jsonl"
    assert _input_name(path) == ("val/val.jsonl (the data home)" if inside else str(path))
