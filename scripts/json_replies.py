"""How the rules and a JSON schema interact on the embedded base model: 20 AlpacaEval-style instructions
that ask for JSON (AlpacaEval's first helpful_base questions, each asking for a JSON answer of a stated
shape, with that shape as its schema), answered by base, base x rules and base x rules x schema.

For each: the share of replies that parse as JSON (the whole reply, surrounding whitespace and a Markdown
code fence allowed) and validate against their schema, and the share that stopped on their own (not at
the token budget). Greedy, batched (one BatchDecoder, any width gives the same replies). The last line is
one JSON object; docs/chat-and-serve.md has the table.

    python scripts/json_replies.py [--max-tokens 256] [--parallel 20]
"""

from __future__ import annotations

import argparse
import json

import bench_harness  # noqa: F401 - puts this checkout first on sys.path
import jsonschema

from ijt_local.rules.expert import load_rules
from ijt_local.runtime.batch import generate_all
from ijt_local.runtime.grammar import json_schema_grammar
from ijt_local.runtime.scores import RequestScores
from ijt_local.runtime.session import Session


def strings(key: str, most: int = 5) -> dict:
    return {
        "type": "object",
        "properties": {key: {"type": "array", "items": {"type": "string", "maxLength": 80}, "maxItems": most}},
        "required": [key],
        "additionalProperties": False,
    }


def answer(*keys: str) -> dict:
    return {
        "type": "object",
        "properties": {key: {"type": "string", "maxLength": 300} for key in keys},
        "required": list(keys),
        "additionalProperties": False,
    }


STEPS = {
    "type": "object",
    "properties": {
        "steps": {"type": "array", "items": {"type": "string", "maxLength": 120}, "minItems": 1, "maxItems": 6}
    },
    "required": ["steps"],
    "additionalProperties": False,
}

ASK = [
    ("What are the names of some famous actors that started their careers on Broadway?", strings("actors")),
    ("How did US states get their names?", answer("summary", "example")),
    ("Can you explain how kickball is played?", STEPS),
    ("What is some cool music from the 1920s?", strings("songs")),
    ("How do I wrap a present neatly?", STEPS),
    ("How do I dice without slicing my finger?", STEPS),
    ("I've never done a crossword puzzle before. Can you help me get started?", STEPS),
    ("Who is Larry Page?", answer("name", "known_for")),
    ("What are different drawers I should have for clothes?", strings("drawers")),
    ("Is retinoid effective at removing acne?", answer("answer", "reason")),
    ("I'm trying to teach myself to have nicer handwriting. Can you help?", STEPS),
    ("What are the best exercises for beginners?", strings("exercises")),
    ("Why did turkeys become the official food of Thanksgiving?", answer("answer")),
    ("I want to get better at networking at work.", strings("tips")),
    ("Are there any weird Christmas traditions?", strings("traditions")),
    ("I'm interested in learning to play badminton. Can you explain the game to me?", answer("goal", "scoring")),
    ("Why do cats always rub up against your legs?", answer("answer")),
    ("What equipment do I need to roast a pig at home?", strings("equipment")),
    ("Help me find a good rated electric saw for my project.", answer("saw", "why")),
    ("What are some good board games for a family night?", strings("games")),
]


def instruction(text: str, schema: dict) -> str:
    keys = ", ".join(schema["properties"])
    return f"{text} Reply with a JSON object only, with the keys: {keys}."


def parses_and_validates(text: str, schema: dict) -> bool:
    body = text.strip()
    if body.startswith("```"):
        body = body.split("\n", 1)[1] if "\n" in body else ""
        body = body.rsplit("```", 1)[0]
    try:
        jsonschema.validate(json.loads(body), schema)
    except (json.JSONDecodeError, jsonschema.ValidationError):
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--parallel", type=int, default=20)
    args = parser.parse_args()
    session = Session("default", n_ctx=2048)
    rules = load_rules()
    conversations = [[{"role": "user", "content": instruction(text, schema)}] for text, schema in ASK]
    rows = {}
    for name, with_rules, with_schema in (
        ("base", False, False),
        ("base x rules", True, False),
        ("base x rules x schema", True, True),
    ):
        replies = {}
        for index, (conversation, (_, schema)) in enumerate(zip(conversations, ASK)):
            if not with_schema:
                continue
            scores = RequestScores.make(grammar=json_schema_grammar(session, schema))
            options = dict(max_tokens=args.max_tokens, rules=rules if with_rules else None, scores=scores)
            replies[index] = next(generate_all(session, [conversation], 1, exact=True, **options))[1]
        if not with_schema:
            options = dict(max_tokens=args.max_tokens, rules=rules if with_rules else None)
            replies = dict(generate_all(session, conversations, args.parallel, **options))
        valid = [parses_and_validates(replies[i].text, ASK[i][1]) for i in range(len(ASK))]
        stopped = [replies[i].finish_reason == "stop" for i in range(len(ASK))]
        rows[name] = {
            "parse_and_validate": sum(valid) / len(ASK),
            "stop_rate": sum(stopped) / len(ASK),
            "mean_tokens": round(sum(replies[i].n_tokens for i in range(len(ASK))) / len(ASK), 1),
            "example": replies[0].text[:160],
        }
        print(name, json.dumps(rows[name]), flush=True)
    session.close()
    print(json.dumps({"benchmark": "json_replies", "instructions": len(ASK), "max_tokens": args.max_tokens} | rows))


if __name__ == "__main__":
    main()
