"""Chat templates, in one place.

The paper's (Tulu) template is the default everywhere:

    <|user|>\n{instruction}\n<|assistant|>\n{response}{eos}\n

Training puts the loss on `{response}{eos}` only; response tuning drops the user turn, leaving
`<|assistant|>\n{response}{eos}\n`. Generation stops at EOS and at the start of a new role tag.
"""

from __future__ import annotations

from dataclasses import dataclass

USER_TAG = "<|user|>"
ASSISTANT_TAG = "<|assistant|>"


@dataclass(frozen=True)
class ChatTemplate:
    name: str
    user_prefix: str
    user_suffix: str
    assistant_prefix: str
    assistant_suffix: str  # follows the EOS token text
    role_tags: tuple[str, ...]
    system_prefix: str | None = None  # templates without a system role render it as a user turn

    def render(self, messages: list[dict], eos: str = "", add_generation_prompt: bool = True) -> str:
        """Messages -> prompt text. Completed assistant turns end with `eos`; the last turn is left open
        for the model when `add_generation_prompt` is set and the last message is from the user."""
        parts = []
        for message in messages:
            role, content = message["role"], message["content"]
            if role == "user":
                parts.append(f"{self.user_prefix}{content}{self.user_suffix}")
            elif role == "assistant":
                parts.append(f"{self.assistant_prefix}{content}{eos}{self.assistant_suffix}")
            elif role == "system":
                parts.append(f"{self.system_prefix or self.user_prefix}{content}{self.user_suffix}")
            else:
                raise ValueError(f"unknown role {role!r}")
        if add_generation_prompt and (not messages or messages[-1]["role"] != "assistant"):
            parts.append(self.assistant_prefix)
        return "".join(parts)

    def split_turn(self, messages: list[dict], eos: str) -> tuple[str, str]:
        """(prompt, completion) for a conversation ending in an assistant turn: the completion is the
        text the loss is computed on (`{response}{eos}`), the prompt everything before it."""
        if not messages or messages[-1]["role"] != "assistant":
            raise ValueError("conversation does not end with an assistant turn")
        prompt = self.render(messages[:-1], eos=eos, add_generation_prompt=True)
        return prompt, messages[-1]["content"] + eos


TULU = ChatTemplate(
    name="tulu",
    user_prefix=f"{USER_TAG}\n",
    user_suffix="\n",
    assistant_prefix=f"{ASSISTANT_TAG}\n",
    assistant_suffix="\n",
    role_tags=(USER_TAG, ASSISTANT_TAG),
)

CHATML = ChatTemplate(
    name="chatml",
    user_prefix="<|im_start|>user\n",
    user_suffix="<|im_end|>\n",
    assistant_prefix="<|im_start|>assistant\n",
    assistant_suffix="\n",
    role_tags=("<|im_start|>", "<|im_end|>", USER_TAG, ASSISTANT_TAG),
    system_prefix="<|im_start|>system\n",
)

TEMPLATES = {t.name: t for t in (TULU, CHATML)}


def get_template(name: str) -> ChatTemplate:
    try:
        return TEMPLATES[name]
    except KeyError:
        raise ValueError(f"unknown chat template {name!r} (known: {', '.join(TEMPLATES)})") from None


def instruction_messages(row: dict) -> list[dict]:
    """A dataset row -> chat messages. Accepts `messages`, `instruction` (+ optional `output`/`input`),
    or `prompt` (+ optional `completion`)."""
    if "messages" in row:
        messages = row["messages"]
        if not isinstance(messages, list) or not all(
            isinstance(m, dict) and "role" in m and "content" in m for m in messages
        ):
            raise ValueError("`messages` must be a list of {role, content}")
        return messages
    for prompt_key, answer_key in (("instruction", "output"), ("prompt", "completion")):
        if prompt_key in row:
            text = str(row[prompt_key])
            if row.get("input"):
                text = f"{text}\n\n{row['input']}"
            messages = [{"role": "user", "content": text}]
            if row.get(answer_key) is not None:
                messages.append({"role": "assistant", "content": str(row[answer_key])})
            return messages
    raise ValueError("row has none of `messages`, `instruction`, `prompt`")


MAX_TURNS = 8  # user turns in one evaluation row (`{"turns": [...]}`)


def parse_turns(row: dict) -> list[str] | None:
    """The user turns of a multi-turn row (`{"turns": [first, second, ...]}`), or None for a row without
    `turns`. A model answers each turn in order with its own earlier replies in context."""
    if "turns" not in row:
        return None
    turns = row["turns"]
    others = [key for key in ("messages", "instruction", "prompt") if key in row]
    if others:
        raise ValueError(f"a row has `turns` or `{others[0]}`, not both")
    if not isinstance(turns, list) or not 1 <= len(turns) <= MAX_TURNS:
        count = len(turns) if isinstance(turns, list) else type(turns).__name__
        raise ValueError(f"`turns` must be a list of 1 to {MAX_TURNS} user messages (got {count})")
    for index, turn in enumerate(turns, 1):
        if not isinstance(turn, str) or not turn.strip():
            raise ValueError(f"`turns` item {index} must be a non-empty string")
    return list(turns)


def recent_turns(messages: list[dict], history: int | None) -> list[dict]:
    """The conversation a reply is generated from: the last user message and the `history` exchanges
    (user message + reply) before it; None keeps everything."""
    if history is None:
        return messages
    starts = [i for i, m in enumerate(messages) if m["role"] == "user"]
    if len(starts) <= history + 1:
        return messages
    return messages[starts[-(history + 1)] :]
