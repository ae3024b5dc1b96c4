"""Batched generation: replies to many prompts decoded together in one llama.cpp context.

Every prompt gets a sequence (`seq_id`) of a context made for `width` sequences. A new sequence's prompt
is decoded in calls of its own; then each step is one `llama_decode` holding the next token of every
running sequence. On a CPU one step reads all the weights once however many sequences it carries, so W
sequences cost little more per step than one (llama.cpp's server serves its parallel slots the same way).

A sequence keeps its own sampler, stop handling and rule state: the rule expert adds to that sequence's
logits row in place, as in the single-stream loop of `Session.generate`. A finished sequence frees its KV
cells and the next waiting prompt starts in its slot, so the batch stays full; once no prompt waits, the
remaining sequences move down to ids 0..n-1, because llama.cpp computes a step in one pass only when its
sequence ids are one increasing run (`_compact`).

Each sequence has its own KV stream (`kv_unified = false`): its attention reads only its own cells. Every
llama_decode carries whole groups of rows (`decode_rows`): a step with fewer running sequences is topped
up with one-token pad sequences, and prompts are decoded in whole groups, so a reply is the same at any
width, in any order and beside any neighbours. The single-stream loop of `Session.generate` decodes one
row per step, llama.cpp's faster one-row kernels, whose text can part from this at a near tie;
`generate_all(..., exact=True)` runs a lone prompt through this generator instead.
"""

from __future__ import annotations

import collections
import heapq
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from ..errors import UserError
from ..rules.expert import RuleConfig, RuleState
from .rows import prefill_ranges, prompt_rows, step_rows
from .session import Generation, ReplyText, SamplingParams, Session, decode_rows, free_sampler, pick_token
from .token_logprobs import TokenChoice, observe

CONTEXT_STEP = 256  # per-sequence contexts are made in multiples of this many tokens
PROMPT_SCORE_ROWS = 64  # rows per call when every prompt row's logits are wanted (see prompt_logprobs)


@dataclass
class Sequence:
    """One prompt in flight."""

    index: int  # in the caller's list
    seq_id: int
    prompt: list[int]
    max_tokens: int
    state: RuleState | None
    sampler: object  # llama.cpp sampler chain, None = greedy
    reply: ReplyText
    started: float
    prefill_seconds: float = 0.0
    request: object = None  # the server's request this sequence answers (ijt_local/serve/engine.py)
    shown: int = 0  # characters of the reply already handed out by `new_text`
    logprobs: int | None = None  # top-k of the logprobs to keep per token; None = none asked
    choices: list[TokenChoice] = field(default_factory=list)  # one per chosen token, when logprobs asked

    @property
    def position(self) -> int:
        """Position of the next token to decode."""
        return len(self.prompt) + len(self.reply.tokens) - 1

    def new_text(self, final: bool = False) -> str:
        """The reply's text that became safe to show (never the start of a role tag) since the last call;
        with `final`, all that is left."""
        visible = len(self.reply.text) if final else self.reply.safe_length()
        piece = self.reply.text[self.shown : visible]
        self.shown = max(self.shown, visible)
        return piece


class BatchGenerator:
    """A second llama.cpp context over a Session's model, with `width` sequences. Reuse it for many calls;
    `close` frees it.

    Each sequence's context is sized to the work of a call (its longest prompt plus reply budget, rounded
    up to CONTEXT_STEP tokens, at most `session.n_ctx`), not to `session.n_ctx`: the KV cache is `width`
    times a sequence's context, so a 2,048-token session at width 32 would hold 65k cells for replies
    that need a few hundred each. The context is made again only when a call needs longer sequences."""

    def __init__(self, session: Session, width: int):
        import llama_cpp

        if width < 1:
            raise UserError(f"--parallel must be at least 1 (got {width})")
        limit = llama_cpp.llama_max_parallel_sequences()
        if step_rows(width) > limit:
            raise UserError(f"--parallel {width}: llama.cpp runs at most {limit} sequences at once")
        self.session = session
        self.width = width
        self.seq_ctx = 0  # no context yet
        self._context = None
        self._batch = llama_cpp.llama_batch_init(session.n_batch, 0, 1)
        session.add_context_hooks(self.set_threads, self.close)

    def fit(self, seq_ctx: int) -> None:
        """Make sure every sequence has room for `seq_ctx` tokens."""
        import llama_cpp
        from llama_cpp import _internals

        seq_ctx = min(-(-seq_ctx // CONTEXT_STEP) * CONTEXT_STEP, self.session.n_ctx)
        if seq_ctx <= self.seq_ctx:
            return
        if self._context is not None:
            self._context.close()
        session = self.session
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = seq_ctx * step_rows(self.width)  # every stream, pad ones included, gets seq_ctx cells
        params.n_batch = params.n_ubatch = session.n_batch
        params.n_seq_max = step_rows(self.width)  # room for the pad sequences of a step
        params.kv_unified = False
        params.n_threads = params.n_threads_batch = session.threads
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED  # as the session's own context
        try:
            self._context = _internals.LlamaContext(model=session.llama._model, params=params, verbose=False)
        except ValueError as exc:
            self._context, self.seq_ctx = None, 0
            raise UserError(
                f"llama.cpp cannot make a context for {self.width} sequences of {seq_ctx} "
                f"tokens ({exc}); lower --parallel or --ctx"
            ) from None
        self.seq_ctx = seq_ctx
        self._ctx = self._context.ctx
        session.apply_adapters(self._ctx)
        self._memory = llama_cpp.llama_get_memory(self._ctx)

    def set_threads(self, threads: int) -> None:
        import llama_cpp

        if self._context is not None:
            llama_cpp.llama_set_n_threads(self._ctx, threads, threads)

    def close(self) -> None:
        import llama_cpp

        if self._batch is not None:
            llama_cpp.llama_batch_free(self._batch)
            self._batch = None
        if self._context is not None:
            self._context.close()
            self._context = None

    def generate(
        self,
        conversations: list[list[dict]],
        max_tokens: int = 512,
        sampling: SamplingParams | None = None,
        rules: RuleConfig | None = None,
        stop_at_role_tags: bool = True,
        ignore_eos: bool = False,
        on_text: Callable[[int, str], None] | None = None,
    ) -> Iterator[tuple[int, Generation]]:
        """(index, Generation) for each conversation, in the order they finish, with the stop handling,
        rule state and sampler (seeded per prompt) of `Session.generate`; `on_text(index, piece)` gets
        each reply as it grows. Every prompt is checked against the per-sequence context before any
        decoding."""
        session = self.session
        sampling = sampling or SamplingParams()
        prompts = [session.prompt_tokens(messages) for messages in conversations]
        budgets = []
        for index, prompt in enumerate(prompts):
            try:
                budgets.append(session.reply_budget(len(prompt), max_tokens))
            except UserError as exc:
                raise UserError(f"prompt {index + 1} of {len(prompts)}: {exc}") from None
        if not prompts:
            return
        self.fit(max(len(prompt) + budget + 1 for prompt, budget in zip(prompts, budgets)))
        tags = session.template.role_tags if stop_at_role_tags else ()
        waiting = collections.deque(range(len(prompts)))
        slots = Slots(self)
        try:
            while waiting or slots.running:
                chosen = []
                while waiting and slots.free:
                    index = waiting.popleft()
                    chosen.append(
                        slots.start(
                            lambda seq_id, index=index: Sequence(
                                index,
                                seq_id,
                                prompts[index],
                                budgets[index],
                                session.rule_state(rules, conversations[index]),
                                session.sampler(sampling),
                                ReplyText(session, tags),
                                time.perf_counter(),
                            )
                        )
                    )
                for seq, token in chosen or slots.step():
                    finish = slots.advance(seq, token, ignore_eos)
                    if finish is not None:
                        slots.release(seq)
                        generation = _generation(seq, finish)
                        if on_text is not None and seq.shown < len(generation.text):
                            on_text(seq.index, seq.new_text(final=True))
                        yield seq.index, generation
                    elif on_text is not None and seq.reply.safe_length() > seq.shown:
                        on_text(seq.index, seq.new_text())
        finally:
            slots.clear()

    def _compact(self, running: dict[int, Sequence], free_ids: list[int]) -> None:
        """Move the highest sequences down into free lower ids until the running ids are 0..n-1.

        llama.cpp splits a step whose sequence ids are not one increasing run (each sequence has its own KV
        stream) into one compute pass per run, and each pass reads all the weights again: a step over ids
        0-3 and 5-15 costs two steps. Gaps appear once no prompt waits to fill a finished slot; a move is a
        copy of one KV stream, far cheaper than a second pass every step."""
        import llama_cpp

        while free_ids and running and free_ids[0] < max(running):
            seq = running.pop(max(running))
            target = heapq.heappushpop(free_ids, seq.seq_id)
            llama_cpp.llama_memory_seq_cp(self._memory, seq.seq_id, target, -1, -1)
            llama_cpp.llama_memory_seq_rm(self._memory, seq.seq_id, -1, -1)
            seq.seq_id = target
            running[target] = seq

    def _decode(self, rows: list[tuple[int, int, int, bool]]) -> None:
        """One llama_decode of (token, position, seq_id, wants_logits) rows."""
        self.session.follow_load()
        decode_rows(self._ctx, self._batch, rows, f"{self.width} sequences of {self.seq_ctx} tokens")

    def _prefill(self, seq: Sequence) -> tuple[Sequence, int]:
        """Decode a starting sequence's prompt in calls of its own, in whole row groups (see decode_rows):
        the same calls whatever else runs, so its cells and first logits never depend on the batch."""
        import llama_cpp

        total = len(seq.prompt)
        for start, end in prefill_ranges(0, total, self.session.n_batch):
            llama_cpp.llama_memory_seq_rm(self._memory, seq.seq_id, start, -1)
            self._decode(prompt_rows(seq.prompt, start, end, seq.seq_id, logits_last=end == total))
            llama_cpp.llama_memory_seq_rm(self._memory, seq.seq_id, end, -1)  # a short prompt's padding
        return seq, total - 1 - start

    def _step(self, sequences: list[Sequence]) -> list[tuple[Sequence, int]]:
        """One llama_decode of the last sampled token of every running sequence, topped up to whole row
        groups with one-token pad sequences in the free ids just above the running ones (which are
        0..n-1, see `_compact`); (sequence, batch index) for each logits row."""
        import llama_cpp

        rows = [(seq.reply.tokens[-1], seq.position, seq.seq_id, True) for seq in sequences]
        assert [seq.seq_id for seq in sequences] == list(range(len(sequences)))
        pads = range(len(sequences), step_rows(len(sequences)))
        self._decode(rows + [(self.session.eos_id, 0, seq_id, False) for seq_id in pads])
        for seq_id in pads:
            llama_cpp.llama_memory_seq_rm(self._memory, seq_id, -1, -1)
        return [(seq, n) for n, seq in enumerate(sequences)]

    def _choose(self, outputs: list[tuple[Sequence, int]]) -> list[tuple[Sequence, int]]:
        """The next token of each sequence that produced logits: rule scores added to its row in place,
        then argmax over all rows at once (greedy) or each sequence's own sampler."""
        import llama_cpp

        pointer = llama_cpp.llama_get_logits(self._ctx)
        logits = np.ctypeslib.as_array(pointer, shape=(len(outputs), self.session.n_vocab))
        asked = {
            row: logits[row].copy() if seq.state is not None else None  # the base row, before the rules
            for row, (seq, _) in enumerate(outputs)
            if seq.logprobs is not None
        }
        for row, (seq, _) in enumerate(outputs):
            if seq.state is not None:
                seq.state.apply(logits[row])
        if all(seq.sampler is None for seq, _ in outputs):
            chosen = [(seq, int(token)) for (seq, _), token in zip(outputs, logits.argmax(axis=1))]
        else:
            chosen = [
                (seq, pick_token(self._ctx, seq.sampler, logits[row], index))
                for row, (seq, index) in enumerate(outputs)
            ]
        for row, base in asked.items():
            seq, token = chosen[row]
            seq.choices.append(observe(base, logits[row], token, seq.logprobs))
        return chosen

    def prompt_logprobs(self, seq_id: int, tokens: list[int], top: int) -> list[TokenChoice | None]:
        """The base model's logprob of every prompt token after the first (None for the first), from calls
        of whole row groups with logits on every row (at most PROMPT_SCORE_ROWS rows, bounding llama.cpp's
        output buffer to that many vocabulary rows). Leaves sequence `seq_id` empty: the reply's prefill
        follows as for any request, so asking for these never changes the reply."""
        import llama_cpp

        scored: list[TokenChoice | None] = [None] * len(tokens)
        for start, end in prefill_ranges(0, len(tokens), PROMPT_SCORE_ROWS):
            llama_cpp.llama_memory_seq_rm(self._memory, seq_id, start, -1)
            rows = [
                (token, position, seq, position < end)
                for token, position, seq, _ in prompt_rows(tokens, start, end, seq_id, logits_last=False)
            ]
            self._decode(rows)
            pointer = llama_cpp.llama_get_logits(self._ctx)
            logits = np.ctypeslib.as_array(pointer, shape=(end - start, self.session.n_vocab))
            for row, position in enumerate(range(start, end)):
                if position + 1 < len(tokens) and scored[position + 1] is None:
                    scored[position + 1] = observe(None, logits[row], tokens[position + 1], top)
        llama_cpp.llama_memory_seq_rm(self._memory, seq_id, -1, -1)
        return scored

    def _release(self, seq: Sequence) -> None:
        import llama_cpp

        llama_cpp.llama_memory_seq_rm(self._memory, seq.seq_id, -1, -1)
        free_sampler(seq.sampler)
        seq.sampler = None


class Slots:
    """The sequences of one BatchGenerator in flight, by sequence id, and the free ids (a heap: a new
    sequence takes the lowest). A round of decoding either starts new sequences (each prefilled alone, its
    first token chosen from its prompt's logits) or steps every running one; `BatchGenerator.generate` and
    the server's Engine both drive their loops through this."""

    def __init__(self, generator: BatchGenerator):
        import llama_cpp

        self.generator = generator
        self.free = list(range(generator.width))
        self.running: dict[int, Sequence] = {}
        llama_cpp.llama_memory_clear(generator._memory, True)

    def start(self, make: Callable[[int], Sequence]) -> tuple[Sequence, int]:
        """Start the sequence `make(seq_id)` in the lowest free slot; (sequence, its first token)."""
        seq = make(heapq.heappop(self.free))
        self.running[seq.seq_id] = seq
        return self.generator._choose([self.generator._prefill(seq)])[0]

    def step(self) -> list[tuple[Sequence, int]]:
        """One decode step of every running sequence; (sequence, next token) for each."""
        generator = self.generator
        generator._compact(self.running, self.free)
        return generator._choose(generator._step([self.running[seq_id] for seq_id in sorted(self.running)]))

    def advance(self, seq: Sequence, token: int, ignore_eos: bool) -> str | None:
        """Take the sampled token; the finish reason if the reply is over, else None."""
        if not seq.reply.tokens:
            seq.prefill_seconds = time.perf_counter() - seq.started
        if self.generator.session.is_end(token) and not ignore_eos:
            return "stop"
        if seq.state is not None:
            seq.state.accept(token)
        if seq.reply.add(token):
            return "stop"
        return "length" if len(seq.reply.tokens) >= seq.max_tokens else None

    def release(self, seq: Sequence) -> None:
        """A finished (or abandoned) sequence gives back its KV cells, sampler and id."""
        del self.running[seq.seq_id]
        self.generator._release(seq)
        heapq.heappush(self.free, seq.seq_id)

    def clear(self) -> None:
        """Drop every sequence in flight (after a failed step, or when a call ends early)."""
        import llama_cpp

        for seq in list(self.running.values()):
            self.release(seq)
        llama_cpp.llama_memory_clear(self.generator._memory, True)


def _generation(seq: Sequence, finish: str) -> Generation:
    seq.reply.close()
    return Generation(
        seq.reply.text,
        finish,
        len(seq.reply.tokens),
        time.perf_counter() - seq.started,
        seq.reply.tokens,
        len(seq.prompt),
        seq.prefill_seconds,
    )


_generators: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # Session -> its BatchGenerator


def batch_generator(session: Session, width: int) -> BatchGenerator:
    """The session's BatchGenerator with `width` sequences (made once per width; the last one is kept)."""
    generator = _generators.get(session)
    if generator is None or generator.width != width:
        if generator is not None:
            generator.close()
        generator = _generators[session] = BatchGenerator(session, width)
    return generator


DEFAULT_PARALLEL = 32  # see default_parallel


def default_parallel() -> int:
    """Sequences in flight when --parallel is not given: the fastest of widths 1-32 on 2 CPU cores
    (scripts/bench_batch.py, README), where bare llama.cpp decode also peaks around 32. The KV cache this
    costs is sized to the work (see BatchGenerator), not to --ctx."""
    return DEFAULT_PARALLEL


def generate_all(
    session: Session, conversations: list[list[dict]], parallel: int | None = None, exact: bool = False, **options
) -> Iterator[tuple[int, Generation]]:
    """(index, Generation) for every conversation: up to `parallel` at once through a BatchGenerator (in
    the order they finish), or one at a time through `Session.generate`'s one-row steps when `parallel`
    is 1 and not `exact`. None means `default_parallel()`. Any width gives the same replies; the one-row
    path is faster for a lone prompt but may part from them at a near tie (see decode_rows)."""
    if parallel is None:
        parallel = default_parallel()
    parallel = min(parallel, max(len(conversations), 1))
    if parallel < 1:
        raise UserError(f"--parallel must be at least 1 (got {parallel})")
    if parallel == 1 and not exact:
        for index, messages in enumerate(conversations):
            yield index, session.generate(messages, **options)
        return
    yield from batch_generator(session, parallel).generate(conversations, **options)
