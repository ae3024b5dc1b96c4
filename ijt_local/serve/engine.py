"""A batched decode loop that takes new requests while it runs: the runtime behind `ijt-local serve`.

`BatchDecoder.generate` decodes a list known in advance; a server's requests arrive at any time. The
Engine drives the same decode core (`BatchDecoder.round`) in a thread of its own, and admits a submitted
request into the first free sequence slot between two steps. Each request reports to a callback,
from the engine thread: text deltas as they become safe to show (never the start of a stop string or role
tag) if it streams, then one final event with the whole text, the finish reason and token counts. (A
callback per token costs: each one wakes the server's event loop, whose thread then competes with
llama.cpp's for the cores.) A cancelled request (a client that
went away) leaves at the next step and frees its slot.

Every sequence's context is fixed when the engine starts (`seq_ctx` tokens each), since remaking the
llama.cpp context would drop the running sequences' KV cells; a request that does not fit is refused
when it is submitted.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import UserError
from ..rules.expert import RuleConfig
from ..runtime.batch import BatchDecoder, ReplyText, Sequence
from ..runtime.scores import RequestScores, product_state
from ..runtime.session import SamplingParams, Session
from ..runtime.token_logprobs import TokenChoice


@dataclass
class Event:
    delta: str = ""  # text to append to the reply
    finish_reason: str | None = None  # set on the last event: "stop", "length" or "error"
    text: str = ""  # the whole reply, on the last event
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None
    choices: list[TokenChoice] = field(default_factory=list)  # logprobs of the tokens since the last event
    prompt_choices: list[TokenChoice | None] | None = None  # on the first event, when prompt logprobs asked
    note: str | None = None  # on the last event: why a grammar ended the reply early
    timings: Timings | None = None  # on the last event


@dataclass
class Timings:
    """Where a request's time went (seconds): waiting for a slot, its prompt (prefill and the first token's
    choice), then the rest of its tokens; and the gaps between its tokens."""

    queue: float = 0.0
    prompt: float = 0.0
    decode: float = 0.0
    token_gaps: list[float] = field(default_factory=list)


@dataclass
class Request:
    messages: list[dict]
    prompt: list[int]
    max_tokens: int
    sampling: SamplingParams
    rules: RuleConfig | None
    stop: tuple[str, ...]
    on_event: Callable[[Event], None]
    stream: bool = True  # report text as it grows; False: only the last event
    logprobs: int | None = None  # top-k per generated token; None = no logprobs
    prompt_logprobs: int | None = None  # top-k per prompt token (echo); None = none
    tags: tuple[str, ...] | None = None  # role tags that end the reply; None = the template's
    scores: RequestScores | None = None  # logit bias, penalties, grammar beside the rules
    cancelled: threading.Event = field(default_factory=threading.Event)
    choices_sent: int = 0
    prompt_scores: list[TokenChoice | None] | None = None
    submitted: float = field(default_factory=time.perf_counter)
    last_token: float = 0.0  # when its last token was taken
    timings: Timings = field(default_factory=Timings)

    def cancel(self) -> None:
        self.cancelled.set()


class Engine:
    """One model's decode loop: `width` sequences of `seq_ctx` tokens each, in a background thread."""

    def __init__(
        self,
        session: Session,
        width: int,
        seq_ctx: int,
        stop_at_role_tags: bool = True,
        adapters: list[tuple[object, float]] | None = None,
    ):
        """`adapters`: the LoRA (handle, scale) pairs this engine's context runs; None = the session's."""
        self.session = session
        self.decoder = BatchDecoder(session, width, adapters)
        self.decoder.fit(seq_ctx)
        self.seq_ctx = self.decoder.seq_ctx
        self.tags = session.template.role_tags if stop_at_role_tags else ()
        self._incoming: collections.deque[Request] = collections.deque()
        self._wake = threading.Condition()
        self._closing = False
        self.running = 0
        self._thread = threading.Thread(target=self._loop, name="ijt-engine", daemon=True)
        self._thread.start()

    def submit(
        self,
        conversation: list[dict] | str | list[int],
        on_event: Callable[[Event], None],
        max_tokens: int | None = None,
        sampling: SamplingParams | None = None,
        rules: RuleConfig | None = None,
        stop: tuple[str, ...] = (),
        stream: bool = True,
        logprobs: int | None = None,
        prompt_logprobs: int | None = None,
        scores: RequestScores | None = None,
    ) -> Request:
        """Queue a reply to chat messages (through the chat template, ended by its role tags) or, when
        `conversation` is a string (or token ids), a continuation of that raw text (no template, no role
        tags; the rule expert's diversity rule is seeded with the text). Raises UserError (before
        queueing) when the prompt and the reply budget do not fit a sequence's context. `max_tokens` None
        = all the room left; `logprobs` = top-k of each reply token's logprobs (0: the chosen token's only)
        reported with the text; `prompt_logprobs` = the base model's logprobs of the prompt's tokens
        (top-k), on the first event; `scores` = logit bias, penalties or a grammar beside the rules
        (runtime/scores.py)."""
        session = self.session
        if isinstance(conversation, str):
            prompt = session.tokenize(conversation, add_bos=session.adds_bos())
            messages, tags = [{"role": "user", "content": conversation}], ()
            if not prompt:
                raise UserError("the prompt is empty")
        elif conversation and all(isinstance(token, int) for token in conversation):
            prompt, tags = list(conversation), ()
            messages = [{"role": "user", "content": session.detokenize(prompt)}]
        else:
            prompt, messages, tags = session.prompt_tokens(conversation), conversation, None
        room = self.seq_ctx - len(prompt) - 1
        if room < 1 or (max_tokens is not None and max_tokens > room):
            asked = f"{max_tokens} reply tokens" if max_tokens is not None else "any reply"
            raise UserError(
                f"the prompt has {len(prompt)} tokens; with {asked} it does not fit the "
                f"{self.seq_ctx}-token context of a sequence (serve --ctx)"
            )
        request = Request(
            messages,
            prompt,
            max_tokens or room,
            sampling or SamplingParams(),
            rules,
            tuple(stop),
            on_event,
            stream,
            logprobs=logprobs,
            prompt_logprobs=prompt_logprobs,
            tags=tags,
            scores=scores,
        )
        with self._wake:
            self._incoming.append(request)
            self._wake.notify()
        return request

    @property
    def waiting(self) -> int:
        return len(self._incoming)

    def close(self) -> None:
        with self._wake:
            self._closing = True
            self._wake.notify()
        self._thread.join()
        self.decoder.close()

    # ---- the engine thread --------------------------------------------------------------------------

    def _loop(self) -> None:
        decoder = self.decoder
        decoder.clear()
        while True:
            with self._wake:
                while not (self._incoming or decoder.running or self._closing):
                    self._wake.wait()
                if self._closing:
                    break
            try:
                for seq in [s for s in decoder.running.values() if s.request.cancelled.is_set()]:
                    decoder.release(seq)
                for seq, finish in decoder.round(self._admit):
                    self._took_token(seq.request)
                    if finish is None:
                        self._report(seq)
                    else:
                        self._finish(seq, finish)
            except Exception as exc:  # noqa: BLE001 - a failed step ends the replies in flight, not the server
                failed = list(decoder.running.values())
                decoder.clear()
                for seq in failed:
                    self._finish(seq, "error", str(exc) or type(exc).__name__)
            self.running = len(decoder.running)
        failed = list(decoder.running.values())
        decoder.clear()
        for seq in failed:
            self._finish(seq, "error", "the server is shutting down")

    def _admit(self):
        """The next request still wanted, as a function making its sequence for a slot; None if none waits."""
        while self._incoming:
            request = self._incoming.popleft()
            if not request.cancelled.is_set():
                return lambda seq_id: self._sequence(seq_id, request)
        return None

    def _sequence(self, seq_id: int, request: Request) -> Sequence:
        request.timings.queue = time.perf_counter() - request.submitted
        tags = self.tags if request.tags is None else request.tags
        if request.prompt_logprobs is not None:
            request.prompt_scores = self.decoder.prompt_logprobs(seq_id, request.prompt, request.prompt_logprobs)
        seq = Sequence(
            0,
            seq_id,
            request.prompt,
            request.max_tokens,
            product_state(self.session.rule_state(request.rules, request.messages), request.scores),
            self.session.sampler(request.sampling),
            ReplyText(self.session, tags + request.stop),
            time.perf_counter(),
            logprobs=request.logprobs,
        )
        seq.request = request
        return seq

    @staticmethod
    def _took_token(request: Request) -> None:
        now = time.perf_counter()
        if request.last_token:
            request.timings.token_gaps.append(now - request.last_token)
        request.last_token = now

    def _report(self, seq: Sequence) -> None:
        if seq.request.stream and seq.reply.safe_length() > seq.shown:
            seq.request.on_event(
                Event(
                    delta=seq.new_text(),
                    choices=self._new_choices(seq),
                    prompt_choices=self._prompt_choices(seq.request),
                )
            )

    def _finish(self, seq: Sequence, finish: str, error: str | None = None) -> None:
        """The last event of a sequence that has left its slot."""
        seq.reply.close()
        request = seq.request
        timings = request.timings
        if seq.reply.tokens or finish != "error":
            timings.prompt = seq.prefill_seconds or (time.perf_counter() - seq.started)
            timings.decode = max(0.0, time.perf_counter() - seq.started - timings.prompt)
        request.on_event(
            Event(
                delta=seq.new_text(final=True),
                finish_reason=finish,
                text=seq.reply.text,
                prompt_tokens=len(seq.prompt),
                completion_tokens=len(seq.reply.tokens),
                error=error,
                choices=self._new_choices(seq),
                prompt_choices=self._prompt_choices(request),
                note=getattr(seq.state, "note", None),
                timings=timings,
            )
        )

    @staticmethod
    def _new_choices(seq: Sequence) -> list[TokenChoice]:
        """The logprobs of reply tokens not reported yet (never the end-of-text token that ended it)."""
        request = seq.request
        new = seq.choices[request.choices_sent : len(seq.reply.tokens)]
        request.choices_sent += len(new)
        return new

    @staticmethod
    def _prompt_choices(request: Request) -> list[TokenChoice | None] | None:
        scores, request.prompt_scores = request.prompt_scores, None  # handed out once, on the first event
        return scores
