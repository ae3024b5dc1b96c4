"""Batched generation: replies to many prompts decoded together in one llama.cpp context.

Every prompt gets a sequence (`seq_id`) of a context made for `width` sequences. A new sequence's prompt
is decoded in calls of its own; then each step is one `llama_decode` holding the next token of every
running sequence. On a CPU one step reads all the weights once however many sequences it carries, so W
sequences cost little more per step than one (llama.cpp's server serves its parallel slots the same way).

A sequence keeps its own sampler, stop handling and rule state: the rule expert adds to that sequence's
logits row in place. A finished sequence frees its reply's KV cells and the next waiting prompt starts in
its slot, so the batch stays full; once no prompt waits, the remaining sequences move down to ids 0..n-1,
because llama.cpp computes a step in one pass only when its sequence ids are one increasing run
(`_compact`). A finished sequence's prompt cells stay in its slot until the slot is needed, so a later
prompt that starts the same way (a chat's next turn, a request under the same system prompt) decodes only
what follows (`_reuse_prefix`).

Each sequence has its own KV stream (`kv_unified = false`): its attention reads only its own cells. Every
llama_decode carries whole groups of rows (`rows.py`): a step with fewer running sequences is topped
up with one-token pad sequences, and prompts are decoded in whole groups, so a reply is the same at any
width, in any order and beside any neighbours. A lone reply (chat, `generate --prompt`) runs through the
same decoder at width 1: padded the same way where the probe measured that cheap
(`Session.batch_invariant_by_default`), or with `--fast` in llama.cpp's one-row steps
(`RowPlan.with_one_row_steps`), faster, but its text can part from the batched one at a near tie.
"""

from __future__ import annotations

import codecs
import collections
import heapq
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from ..errors import UserError
from ..rules.expert import RuleConfig, RuleState
from .llama import Context, free_sampler, max_parallel_sequences
from .rows import RowPlan
from .scores import RequestScores, product_state
from .session import Generation, SamplingParams, Session, shared_prefix
from .token_logprobs import TokenChoice, observe

CONTEXT_STEP = 256  # per-sequence contexts are made in multiples of this many tokens
PROMPT_SCORE_ROWS = 64  # rows per call when every prompt row's logits are wanted (see prompt_logprobs)
SHARED_PREFIX = 32  # prompt tokens a new sequence must share with a running one to copy its cells


def pick_token(context: Context, sampler, logits: np.ndarray, index: int) -> int:
    """The next token from a logits row that the rule expert (if any) has already shifted: argmax when
    greedy (`sampler` None), else the sampler chain on output `index` of the context's last decode."""
    if sampler is None:
        return int(np.argmax(logits))
    return context.sample(sampler, index)


class ReplyText:
    """A reply growing token by token: bytes decoded as UTF-8 across token boundaries, and the text cut
    where it starts a role tag (`<|user|>` …), which ends the reply."""

    def __init__(self, session: Session, tags: tuple[str, ...]):
        self.session = session
        self.tags = tags
        self.tokens: list[int] = []
        self.text = ""
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def add(self, token: int) -> bool:
        """Append `token`; True if the text now holds a role tag (cut off: the reply is over)."""
        self.tokens.append(token)
        self.text += self._utf8.decode(self.session.token_bytes(token))
        cut = _find_tag(self.text, self.tags)
        if cut is None:
            return False
        self.text = self.text[:cut]
        return True

    def safe_length(self) -> int:
        """How much of the text can be shown: never the start of what may become a role tag."""
        return len(self.text) - _partial_tag_suffix(self.text, self.tags)

    def close(self) -> None:
        self.text += self._utf8.decode(b"", final=True)


def _find_tag(text: str, tags: tuple[str, ...]) -> int | None:
    hits = [i for i in (text.find(tag) for tag in tags) if i >= 0]
    return min(hits) if hits else None


def _partial_tag_suffix(text: str, tags: tuple[str, ...]) -> int:
    """Length of the longest tail of `text` that could still grow into a role tag."""
    longest = 0
    for tag in tags:
        for k in range(min(len(tag) - 1, len(text)), longest, -1):
            if text.endswith(tag[:k]):
                longest = k
                break
    return longest


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
    ignore_eos: bool = False  # decode through end-of-text tokens (speed measurements)
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


class BatchDecoder:
    """The decode core: a second llama.cpp context over a Session's weights with `width` sequence slots,
    and the sequences in them. It owns admission (a new sequence prefilled alone in the lowest free slot),
    steps (one llama_decode for every running sequence, padded to whole row groups), compaction and
    release. `generate` (a list known in advance) and serve's Engine (requests arriving at any time) are
    both thin loops over `round`. Reuse it for many calls; `close` frees it.

    Each sequence's context is sized to the work (its longest prompt plus reply budget, rounded up to
    CONTEXT_STEP tokens, at most `session.n_ctx`), not to `session.n_ctx`: the KV cache is `width` times a
    sequence's context, so a 2,048-token session at width 32 would hold 65k cells for replies that need a
    few hundred each. The context is made again only when a call needs longer sequences.

    `adapters`: the LoRA (handle, scale) pairs this context runs; None = the session's. `plan`: the rows
    each call carries; None = the session's probed plan (`RowPlan.with_one_row_steps()` of it for `--fast`)."""

    def __init__(
        self,
        session: Session,
        width: int,
        adapters: list[tuple[object, float]] | None = None,
        plan: RowPlan | None = None,
    ):
        if width < 1:
            raise UserError(f"--parallel must be at least 1 (got {width})")
        limit = max_parallel_sequences()
        self.plan = session.row_plan if plan is None else plan
        if self.plan.step_rows(width) > limit:
            raise UserError(f"--parallel {width}: llama.cpp runs at most {limit} sequences at once")
        self.session = session
        self.width = width
        self.adapters = session.adapters if adapters is None else adapters
        self.seq_ctx = 0  # no context yet
        self.context: Context | None = None
        self.running: dict[int, Sequence] = {}  # by sequence id
        self.free = list(range(width))  # a heap: a new sequence takes the lowest id
        self.kept: dict[int, list[int]] = {}  # free slot id -> the prompt whose cells it still holds
        self.reused_prompt_tokens = 0  # prompt tokens whose cells a sequence took from another or a kept one
        session.add_context_hooks(self.set_threads, self.close)

    def fit(self, seq_ctx: int) -> None:
        """Make sure every sequence has room for `seq_ctx` tokens (drops any sequence in flight)."""
        seq_ctx = min(-(-seq_ctx // CONTEXT_STEP) * CONTEXT_STEP, self.session.n_ctx)
        if seq_ctx <= self.seq_ctx:
            return
        self.clear()
        if self.context is not None:
            self.context.close()
        rows = self.plan.step_rows(self.width)  # every stream, pad ones included, gets seq_ctx cells
        try:
            self.context = self.session.llama.new_context(seq_ctx * rows, rows, self.session.threads)
        except ValueError as exc:
            self.context, self.seq_ctx = None, 0
            raise UserError(
                f"llama.cpp cannot make a context for {self.width} sequences of {seq_ctx} "
                f"tokens ({exc}); lower --parallel or --ctx"
            ) from None
        self.seq_ctx = seq_ctx
        if self.adapters:
            self.context.set_adapters(self.adapters)

    def set_threads(self, threads: int) -> None:
        if self.context is not None:
            self.context.set_threads(threads)

    def close(self) -> None:
        if self.context is not None:
            self.clear()
            self.context.close()
            self.context, self.seq_ctx = None, 0  # a later call makes a context again

    # ---- the slots ---------------------------------------------------------------------------------

    def round(self, admit: Callable[[], Callable[[int], Sequence] | None]) -> list[tuple[Sequence, str | None]]:
        """One round of decoding: start new sequences while slots are free and `admit()` gives one (a
        function making the sequence for a slot id), each prefilled alone and its first token chosen from
        its prompt's logits; or, when none started, one step of every running sequence. Returns each
        sequence that took a token with its finish reason; a finished one (reason not None) has already
        left its slot."""
        chosen = []
        while self.free:
            make = admit()
            if make is None:
                break
            chosen.append(self._start(make))
        if not chosen and self.running:
            chosen = self._step()
        taken = []
        for seq, token in chosen:
            finish = self._advance(seq, token)
            if finish is not None:
                self.release(seq, keep_prompt=True)
            taken.append((seq, finish))
        return taken

    def release(self, seq: Sequence, keep_prompt: bool = False) -> None:
        """A finished (or abandoned) sequence gives back its sampler, its id and its KV cells: all of them,
        or with `keep_prompt` all but its prompt's, which stay in the slot for a later prompt that starts
        the same way (prompt calls wrote them; a reply's cells, written by decode steps, are never reused)."""
        del self.running[seq.seq_id]
        if keep_prompt and self.context.remove(seq.seq_id, len(seq.prompt)):
            self.kept[seq.seq_id] = seq.prompt
        else:
            self.context.remove(seq.seq_id)
        free_sampler(seq.sampler)
        seq.sampler = None
        heapq.heappush(self.free, seq.seq_id)

    def abandon(self) -> None:
        """Release every sequence in flight, keeping no cells of theirs (a call that ends early)."""
        for seq in list(self.running.values()):
            self.release(seq)

    def clear(self) -> None:
        """Drop every sequence in flight and every kept prompt (after a failed step: nothing in the cache
        is trusted)."""
        self.abandon()
        self.kept.clear()
        if self.context is not None:
            self.context.clear()

    def _empty(self, seq_id: int) -> None:
        """Free slot `seq_id` of a kept prompt's cells before a pad, a moved sequence or prompt scores use it."""
        if self.kept.pop(seq_id, None) is not None:
            self.context.remove(seq_id)

    def _start(self, make: Callable[[int], Sequence]) -> tuple[Sequence, int]:
        seq = make(heapq.heappop(self.free))
        self.running[seq.seq_id] = seq
        return self._choose([self._prefill(seq)])[0]

    def _step(self) -> list[tuple[Sequence, int]]:
        """One llama_decode of the last sampled token of every running sequence, topped up to whole row
        groups with one-token pad sequences in the free ids just above the running ones (which are
        0..n-1, see `_compact`)."""
        self._compact()
        sequences = [self.running[seq_id] for seq_id in sorted(self.running)]
        rows = [(seq.reply.tokens[-1], seq.position, seq.seq_id, True) for seq in sequences]
        assert [seq.seq_id for seq in sequences] == list(range(len(sequences)))
        pads = range(len(sequences), self.plan.step_rows(len(sequences)))
        for seq_id in pads:
            self._empty(seq_id)
        self._decode(rows + [(self.session.eos_id, 0, seq_id, self.plan.pad_logits) for seq_id in pads])
        for seq_id in pads:
            self.context.remove(seq_id)
        return self._choose([(seq, n) for n, seq in enumerate(sequences)])

    def _advance(self, seq: Sequence, token: int) -> str | None:
        """Take the chosen token; the finish reason if the reply is over, else None."""
        if not seq.reply.tokens:
            seq.prefill_seconds = time.perf_counter() - seq.started
        if self.session.is_end(token) and not seq.ignore_eos:
            return "stop"
        if seq.state is not None:
            seq.state.accept(token)
        if seq.reply.add(token):
            return "stop"
        return "length" if len(seq.reply.tokens) >= seq.max_tokens else None

    def _compact(self) -> None:
        """Move the highest sequences down into free lower ids until the running ids are 0..n-1.

        llama.cpp splits a step whose sequence ids are not one increasing run (each sequence has its own KV
        stream) into one compute pass per run, and each pass reads all the weights again: a step over ids
        0-3 and 5-15 costs two steps. Gaps appear once no prompt waits to fill a finished slot; a move is a
        copy of one KV stream, far cheaper than a second pass every step."""
        running, free_ids = self.running, self.free
        while free_ids and running and free_ids[0] < max(running):
            seq = running.pop(max(running))
            target = heapq.heappushpop(free_ids, seq.seq_id)
            self.kept.pop(target, None)  # the move replaces the target's cells
            self.context.move(seq.seq_id, target)
            seq.seq_id = target
            running[target] = seq

    # ---- llama.cpp calls ---------------------------------------------------------------------------

    def _decode(self, rows: list[tuple[int, int, int, bool]]) -> None:
        """One llama_decode of (token, position, seq_id, wants_logits) rows."""
        self.session.follow_load()
        self.context.decode(rows)

    def _prefill(self, seq: Sequence) -> tuple[Sequence, int]:
        """Decode a starting sequence's prompt in calls of its own, in whole row groups (see rows.py), after
        the prefix it shares with a prompt whose cells are at hand (`_reuse_prefix`): its cells and first
        logits are those of a fresh prefill whatever else runs, so they never depend on the batch."""
        total = len(seq.prompt)
        cached = self._reuse_prefix(seq)
        for start, end in self.plan.prefill_ranges(cached, total, self.session.n_batch):
            self.context.remove(seq.seq_id, start)
            self._decode(self.plan.prompt_rows(seq.prompt, start, end, seq.seq_id, logits_last=end == total))
            self.context.remove(seq.seq_id, end)  # a short prompt's padding
        return seq, total - 1 - start

    def _reuse_prefix(self, seq: Sequence) -> int:
        """Start `seq` from the cells of the longest prompt prefix it shares with a prompt at hand: the one
        its own slot kept (any length: nothing to copy), or a running sequence's or another slot's kept
        prompt (at least SHARED_PREFIX tokens, copied), so a chat's next turn, `n` choices of one request or
        prompts under one long system prompt pay for it once. Prompt cells do not depend on how their
        prompt was cut into calls (the plan's prompt calls; the probe checks split calls), so the reused
        cells and `prefill_ranges`' reach-back give the cells and logits of a fresh prefill. Returns the
        tokens kept (0: none could be)."""
        own = self.kept.pop(seq.seq_id, None)
        best, source = shared_prefix(own, seq.prompt) if own else 0, seq.seq_id
        prompts = [(other.seq_id, other.prompt) for other in self.running.values() if other is not seq]
        for seq_id, prompt in prompts + list(self.kept.items()):
            shared = shared_prefix(prompt, seq.prompt)
            if shared >= SHARED_PREFIX and shared > best:
                best, source = shared, seq_id
        context = self.context
        if best == 0:
            context.remove(seq.seq_id)
            return 0
        if source != seq.seq_id:
            context.copy(source, seq.seq_id)  # a whole stream: llama.cpp copies no part of one across streams
        # keep the shared prompt cells only; a sliding-window cache that dropped early cells is no use
        if context.remove(seq.seq_id, best) and context.first_position(seq.seq_id) == 0:
            self.reused_prompt_tokens += best
            return best
        context.remove(seq.seq_id)
        return 0

    def _choose(self, outputs: list[tuple[Sequence, int]]) -> list[tuple[Sequence, int]]:
        """The next token of each sequence that produced logits: rule scores added to its row in place,
        then argmax over all rows at once (greedy) or each sequence's own sampler."""
        logits = self.context.logits_rows(len(outputs))
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
                (seq, pick_token(self.context, seq.sampler, logits[row], index))
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
        scored: list[TokenChoice | None] = [None] * len(tokens)
        self._empty(seq_id)
        for start, end in self.plan.prefill_ranges(0, len(tokens), PROMPT_SCORE_ROWS):
            self.context.remove(seq_id, start)
            rows = [
                (token, position, seq, position < end)
                for token, position, seq, _ in self.plan.prompt_rows(tokens, start, end, seq_id, logits_last=False)
            ]
            self._decode(rows)
            logits = self.context.logits_rows(end - start)
            for row, position in enumerate(range(start, end)):
                if position + 1 < len(tokens) and scored[position + 1] is None:
                    scored[position + 1] = observe(None, logits[row], tokens[position + 1], top)
        self.context.remove(seq_id)
        return scored

    # ---- a list known in advance -------------------------------------------------------------------

    def generate(
        self,
        conversations: list[list[dict]],
        max_tokens: int = 512,
        sampling: SamplingParams | None = None,
        rules: RuleConfig | None = None,
        stop_at_role_tags: bool = True,
        ignore_eos: bool = False,
        on_text: Callable[[int, str], None] | None = None,
        scores: RequestScores | None = None,
    ) -> Iterator[tuple[int, Generation]]:
        """(index, Generation) for each conversation, in the order they finish. A reply stops at an
        end-of-generation token or, with `stop_at_role_tags`, where its text starts a role tag
        (`<|user|>` …), which is cut from it. `rules` and `scores` (logit bias, penalties, a grammar:
        scores.py) add to each sequence's logits; `sampling` is seeded per prompt. `on_text(index, piece)`
        gets each reply as it grows (never a partial role tag). Every prompt is checked against the
        per-sequence context before any decoding."""
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

        def admit():
            if not waiting:
                return None
            index = waiting.popleft()
            return lambda seq_id: Sequence(
                index,
                seq_id,
                prompts[index],
                budgets[index],
                product_state(session.rule_state(rules, conversations[index]), scores),
                session.sampler(sampling),
                ReplyText(session, tags),
                time.perf_counter(),
                ignore_eos=ignore_eos,
            )

        self.abandon()
        try:
            while waiting or self.running:
                for seq, finish in self.round(admit):
                    if finish is not None:
                        generation = _generation(seq, finish)
                        if on_text is not None and seq.shown < len(generation.text):
                            on_text(seq.index, seq.new_text(final=True))
                        yield seq.index, generation
                    elif on_text is not None and seq.reply.safe_length() > seq.shown:
                        on_text(seq.index, seq.new_text())
        except Exception:
            self.clear()  # after a failed call nothing in the cache is trusted
            raise
        finally:
            self.abandon()  # a caller that stopped early (or Ctrl-C): the kept prompts stay


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


_decoders: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # Session -> its BatchDecoder


def batch_decoder(session: Session, width: int, one_row_steps: bool = False) -> BatchDecoder:
    """The session's BatchDecoder with `width` sequences under the session's row plan, or with
    `one_row_steps` that plan's prompt calls and unpadded steps (`--fast`). Made once per width and plan;
    the last one is kept, with the prompts its slots hold (a chat's earlier turns)."""
    plan = session.row_plan.with_one_row_steps() if one_row_steps else session.row_plan
    decoder = _decoders.get(session)
    if decoder is None or decoder.width != width or decoder.plan != plan:
        if decoder is not None:
            decoder.close()
        decoder = _decoders[session] = BatchDecoder(session, width, plan=plan)
    return decoder


DEFAULT_PARALLEL = 32  # see default_parallel


def default_parallel() -> int:
    """Sequences in flight when --parallel is not given: the fastest of widths 1-32 on 2 CPU cores
    (scripts/bench_batch.py, README), where bare llama.cpp decode also peaks around 32. The KV cache this
    costs is sized to the work (see BatchDecoder), not to --ctx."""
    return DEFAULT_PARALLEL


def generate_all(
    session: Session,
    conversations: list[list[dict]],
    parallel: int | None = None,
    exact: bool | None = None,
    **options,
) -> Iterator[tuple[int, Generation]]:
    """(index, Generation) for every conversation (BatchDecoder.generate's options), up to `parallel` at
    once, in the order they finish. `parallel` None means `default_parallel()`. Any width gives the same
    replies; at width 1 with `exact` False they are decoded in llama.cpp's one-row steps, faster for a lone
    prompt but they may part from the batched ones at a near tie (see rows.py); `exact` None:
    `Session.batch_invariant_by_default`."""
    if parallel is None:
        parallel = default_parallel()
    parallel = min(parallel, max(len(conversations), 1))
    if parallel < 1:
        raise UserError(f"--parallel must be at least 1 (got {parallel})")
    if parallel == 1 and exact is None:
        exact = session.batch_invariant_by_default()
    one_row_steps = parallel == 1 and not exact
    yield from batch_decoder(session, parallel, one_row_steps).generate(conversations, **options)


def generate_one(
    session: Session,
    messages: list[dict],
    exact: bool | None = None,
    on_text: Callable[[str], None] | None = None,
    **options,
) -> Generation:
    """One reply decoded alone: `generate_all` at width 1 (`exact` False: llama.cpp's one-row steps);
    `on_text(piece)` gets it as it grows."""
    stream = None if on_text is None else (lambda _, piece: on_text(piece))
    [(_, generation)] = generate_all(session, [messages], 1, exact, on_text=stream, **options)
    return generation
