"""A llama.cpp session: load a GGUF (+ LoRA adapters), hold its tokenizer, template, rule experts and
probed row plan, and score text (a response's log-probability, a judge's next-token distribution).

Replies are decoded by batch.py's BatchDecoder, a second context over the same weights. Its loop works on
llama.cpp's own contiguous logits buffer (a zero-copy numpy view): the rule expert adds its scores in
place, then llama.cpp's native sampler chain picks the token from the same buffer, so plain and PoE
decoding share one loop and differ by a single vectorised add.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..models import ResolvedModel, resolve_model
from ..prompts import ChatTemplate, get_template
from ..rules.expert import RuleConfig, RuleExpert, Vocabulary
from ..rules.poe import poe_logprob
from ..rules.vocab_cache import load_vocabulary
from .llama import Context, LlamaModel, make_sampler
from .row_probe import ProbeResult, load_or_probe
from .rows import MAX_PADDED_COST, RowPlan

THREAD_CHECK_SECONDS = 30.0  # how often a session without --threads re-counts the busy cores (0.1 s each)


@dataclass
class SamplingParams:
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    top_k: int = 0
    seed: int = 0
    min_p: float = 0.0


@dataclass
class Generation:
    text: str
    finish_reason: str  # "stop" (EOS or a role tag) or "length"
    n_tokens: int
    seconds: float
    tokens: list[int] = field(default_factory=list)
    prompt_tokens: int = 0
    prefill_seconds: float = 0.0

    @property
    def decode_tokens_per_second(self) -> float:
        seconds = self.seconds - self.prefill_seconds
        return self.n_tokens / seconds if seconds > 0 else 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.n_tokens / self.seconds if self.seconds > 0 else 0.0


@dataclass
class ResponseScore:
    logprob_sum: float
    n_tokens: int

    @property
    def mean_logprob(self) -> float:
        return self.logprob_sum / max(self.n_tokens, 1)


class Session:
    def __init__(
        self,
        model: ResolvedModel | str,
        n_ctx: int = 4096,
        threads: int | None = None,
        gpu_layers: int | None = None,
        adapters: Iterable[tuple[str | Path, float]] = (),
        template: str | None = None,
        n_batch: int = 512,
        repack: bool = True,
    ):
        self.model = resolve_model(model) if isinstance(model, str) else model
        self.template: ChatTemplate = get_template(template or self.model.template)
        self.n_batch = n_batch
        threads_given = threads is not None
        self.threads = threads = threads or default_threads()
        self.llama = LlamaModel(self.model.path, n_ctx, n_batch, threads, gpu_layers, repack)
        self._context: Context | None = None  # for scoring, made on first use (replies decode in batch.py's)
        self.n_vocab = self.llama.n_vocab
        self.n_ctx = self.llama.n_ctx
        self.eos_id = self.llama.eos_id
        try:
            self.adapters = [(self.llama.load_adapter(Path(path)), float(scale)) for path, scale in adapters]
        except UserError:
            self.llama.close()
            raise
        self._kv_tokens: list[int] = []  # the prompt whose cells the context holds, for prefix reuse
        self._vocabulary: Vocabulary | None = None
        self._experts: dict[int, RuleExpert] = {}
        self._on_threads: list[Callable[[int], None]] = []  # other contexts over this model
        self._on_close: list[Callable[[], None]] = []
        self._threads_given = threads_given
        self._threads_checked = time.monotonic()
        self._probe: ProbeResult | None = None

    @property
    def context(self) -> Context:
        """The session's own context (one sequence of n_ctx tokens): scoring, a judge's next-token
        distribution. Made when first used, so a session that only generates never holds it."""
        if self._context is None:
            self._context = self.llama.new_context(self.n_ctx, 1, self.threads)
            if self.adapters:
                self._context.set_adapters(self.adapters)
        return self._context

    @property
    def row_probe(self) -> ProbeResult:
        """What `row_probe.py` measured for this model on this machine (probed on first use, then cached)."""
        if self._probe is None:
            self._probe = load_or_probe(self.llama, self.threads)
            if not self._probe.plan.invariant:
                print(f"{self.model.path.name}: {self._probe.summary()}", file=sys.stderr)
        return self._probe

    def batch_invariant_by_default(self) -> bool:
        """Whether a lone reply (chat, `generate --prompt`) is decoded as the batched paths decode it when
        not told: yes where the probe found an invariant regime and padding a lone step to it costs at
        most MAX_PADDED_COST of a one-row step (a model bound by memory bandwidth, where extra rows are
        nearly free); else llama.cpp's faster one-row steps."""
        probe = self.row_probe
        return probe.plan.invariant and probe.padded_cost <= MAX_PADDED_COST

    @property
    def row_plan(self) -> RowPlan:
        """How many rows each llama_decode call carries (rows.py)."""
        return self.row_probe.plan

    def follow_load(self) -> None:
        """Unless threads were given, re-count (at most every THREAD_CHECK_SECONDS) the cores other
        processes keep busy and move this session's contexts to the rest. A judge opened while a training
        job held a core would otherwise run one thread for hours after the job ended, and one opened on an
        idle machine keep spinning two threads against a job started later (default_threads)."""
        if self._threads_given or time.monotonic() - self._threads_checked < THREAD_CHECK_SECONDS:
            return
        threads = default_threads()
        self._threads_checked = time.monotonic()
        if threads == self.threads:
            return
        self.threads = threads
        if self._context is not None:
            self._context.set_threads(threads)
        for follow in self._on_threads:
            follow(threads)

    def add_context_hooks(self, on_threads: Callable[[int], None], on_close: Callable[[], None]) -> None:
        """Another llama.cpp context over this session's model (a BatchDecoder's) follows its thread
        count and is closed with it."""
        self._on_threads.append(on_threads)
        self._on_close.append(on_close)

    # ---- tokens and text -------------------------------------------------------------------------

    def tokenize(self, text: str, add_bos: bool = False, special: bool = True) -> list[int]:
        return self.llama.tokenize(text, add_bos=add_bos, special=special)

    def detokenize(self, tokens: list[int]) -> str:
        return self.llama.detokenize(tokens).decode("utf-8", errors="replace")

    def token_bytes(self, token: int, special: bool = False) -> bytes:
        return self.llama.piece(token, special)

    def is_end(self, token: int) -> bool:
        return self.llama.is_end(token)

    def vocabulary(self) -> Vocabulary:
        """The text of each token id: read from llama.cpp once per model file (~1 s for a 262k vocabulary),
        then from the on-disk cache (`vocab_cache`)."""
        if self._vocabulary is None:
            self._vocabulary = load_vocabulary(
                self.model.path,
                self.n_vocab,
                self.eos_id,
                lambda: [self.token_bytes(i).decode("utf-8", errors="replace") for i in range(self.n_vocab)],
            )
        return self._vocabulary

    def rule_expert(self, config: RuleConfig) -> RuleExpert:
        """`config` resolved against this vocabulary, once per config object (the expert keeps the config
        alive, so its id is not reused while cached); `forget_rules` drops one no longer needed."""
        key = id(config)
        if key not in self._experts:
            self._experts[key] = RuleExpert(config, self.vocabulary())
        return self._experts[key]

    def forget_rules(self, config: RuleConfig) -> None:
        self._experts.pop(id(config), None)

    def rule_state(self, rules: RuleConfig | None, messages: list[dict] | None):
        """A fresh rule state for a reply to `messages`: the last user turn seeds the diversity rule, and the
        assistant replies before it the conversation's earlier-replies score (when the config sets one)."""
        if rules is None:
            return None
        messages = messages or []
        instruction = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        earlier = []
        if rules.earlier_reply_penalty or rules.copy_penalty:
            earlier = [self.tokenize(m["content"], special=False) for m in messages if m["role"] == "assistant"]
        return self.rule_expert(rules).start(self.tokenize(instruction, special=False), earlier)

    def prompt_tokens(self, messages: list[dict]) -> list[int]:
        text = self.template.render(messages, eos=self.eos_text())
        return self.tokenize(text, add_bos=self.adds_bos())

    def eos_text(self) -> str:
        return self.token_bytes(self.eos_id, special=True).decode("utf-8", errors="replace")

    def adds_bos(self) -> bool:
        return self.llama.adds_bos()

    # ---- decoding --------------------------------------------------------------------------------

    def _decode_rows(self, rows: list[tuple[int, int, int, bool]]) -> None:
        """One llama_decode of (token, position, seq_id, wants_logits) rows."""
        self.follow_load()
        self.context.decode(rows)

    def _prefill(self, tokens: list[int]) -> None:
        """Bring the KV cache to `tokens`, reusing whatever prefix it shares with the previous call's (a
        judge's other order, the next model judged against the same reply). Every call carries whole row
        groups (`rows.prefill_ranges`), so the cells and the last logits are the same as a fresh prefill's."""
        shared = shared_prefix(self._kv_tokens, tokens)
        plan = self.row_plan
        ranges = plan.prefill_ranges(shared, len(tokens), self.n_batch)
        first = ranges[0][0]
        # A sliding-window cache that has dropped early cells (pos_min > 0) may lack cells the kept
        # prefix's window needs; decode from scratch then (llama.cpp's server checks the same).
        context = self.context
        if not (first > 0 and context.remove(0, first) and context.first_position(0) <= 0):
            context.clear()
            ranges = plan.prefill_ranges(0, len(tokens), self.n_batch)
        self._kv_tokens = []
        for start, end in ranges:
            context.remove(0, start)
            self._decode_rows(plan.prompt_rows(tokens, start, end, 0, logits_last=end == len(tokens)))
            context.remove(0, end)  # the padding of a short prompt
        self._kv_tokens = list(tokens)

    def sampler(self, sampling: SamplingParams):
        """A llama.cpp sampler chain for `sampling`, or None for greedy (llama.make_sampler); free it with
        `llama.free_sampler`."""
        return make_sampler(sampling.temperature, sampling.top_p, sampling.top_k, sampling.seed, sampling.min_p)

    def reply_budget(self, prompt_length: int, max_tokens: int) -> int:
        """`max_tokens` cut to the room the context leaves after the prompt; a prompt that leaves none is
        an error."""
        room = self.n_ctx - prompt_length
        if room <= 1:
            raise UserError(f"prompt of {prompt_length} tokens does not fit the {self.n_ctx}-token context")
        return min(max_tokens, room - 1)

    # ---- scoring ---------------------------------------------------------------------------------

    def logits(self, tokens: list[int]) -> np.ndarray:
        """Logits predicting the token after each position of `tokens` (fresh context): [n, vocab]."""
        self.context.clear()
        self._kv_tokens = []
        out = np.empty((len(tokens), self.n_vocab), dtype=np.float32)
        for start in range(0, len(tokens), self.n_batch):
            chunk = tokens[start : start + self.n_batch]
            self._decode_rows([(token, start + i, 0, True) for i, token in enumerate(chunk)])
            for i in range(len(chunk)):
                out[start + i] = self.context.logits_row(i)
        self.context.clear()
        return out

    def next_token_logprobs(self, tokens: list[int], reuse_prefix: bool = True) -> np.ndarray:
        """log p(next token | tokens) over the whole vocabulary (float64): one prefill, nothing sampled;
        a prefix shared with the previous call is not decoded again (a judge's two orders share the
        instructions and the question), which gives the same numbers as decoding it again."""
        if not tokens or len(tokens) >= self.n_ctx:
            raise UserError(f"prompt of {len(tokens)} tokens does not fit the {self.n_ctx}-token context")
        if not reuse_prefix:
            self._kv_tokens = []
        self._prefill(tokens)
        logits = self.context.logits_row().astype(np.float64)
        top = logits.max()
        return logits - (top + np.log(np.exp(logits - top).sum()))

    def score_response(self, messages: list[dict], response: str, rules: RuleConfig | None = None) -> ResponseScore:
        """log p(response | prompt) under the model, or under the normalised product of experts
        (logit + rule score − logsumexp(logit + rule score)) when `rules` is given."""
        return self.score_responses(messages, [response], rules)[0]

    def score_responses(
        self, messages: list[dict], responses: list[str], rules: RuleConfig | None = None
    ) -> list[ResponseScore]:
        """`score_response` of each of `responses` to the same prompt. The prompt is decoded once and its
        cells kept; each response is decoded after it and its cells removed again. Every call carries
        whole row groups (rows.py), so a score does not depend on which other responses were scored
        with it, nor on their order."""
        context, plan = self.context, self.row_plan
        prompt = self.prompt_tokens(messages)
        initial_state = self.rule_state(rules, messages)
        head = prompt[:-1]  # its cells are shared; the last prompt token's logits predict each response
        context.clear()
        self._kv_tokens = []
        kept = 0
        if len(head) >= 1:
            self._prefill(head)
            kept = len(head)
        first = len(prompt) - 1  # the position whose logits predict the first response token
        scores = []
        for response in responses:
            response_tokens = self.tokenize(response, special=False)
            if not response_tokens:
                scores.append(ResponseScore(0.0, 0))
                continue
            tokens = (prompt + response_tokens)[: self.n_ctx]
            state = initial_state.copy() if initial_state is not None else None
            total, n = 0.0, 0
            for start, end in plan.prefill_ranges(kept, len(tokens), self.n_batch):
                context.remove(0, start)
                rows = plan.prompt_rows(tokens, start, end, 0, logits_last=False)
                rows = [(t, pos, seq, pos >= first and pos < end) for t, pos, seq, _ in rows]
                self._decode_rows(rows)
                for index, (_, pos, _, wanted) in enumerate(rows):
                    if not wanted or pos + 1 >= len(tokens):
                        continue
                    target = tokens[pos + 1]
                    rule_scores = state.scores() if state is not None else None
                    total += poe_logprob(context.logits_row(index), rule_scores, target)
                    n += 1
                    if state is not None:
                        state.accept(target)
            context.remove(0, kept)
            scores.append(ResponseScore(total, n))
        context.clear()
        self._kv_tokens = []
        return scores

    def close(self) -> None:
        for close in reversed(self._on_close):
            close()
        self._on_close.clear()
        if self._context is not None:
            self._context.close()
            self._context = None
        self.llama.close()


def shared_prefix(a: list[int], b: list[int]) -> int:
    """How many leading tokens `a` and `b` have in common."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def default_threads() -> int:
    """The cores this process may use, less those other processes keep busy right now.

    llama.cpp's CPU threads meet at a barrier after every graph node and spin there. When another process
    holds one of 2 cores, two threads run at half the speed of one (33 vs 49 tok/s single-stream, 70 vs
    101 batched; scripts/bench_threads.py, README), while on an idle machine two are 1.4-1.7x faster
    than one. OMP_WAIT_POLICY=passive avoids the collapse but costs ~45 % single-stream when idle, so
    the wait policy stays and the thread count follows the load (`Session.follow_load`)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores - round(_busy_cores()))


def _busy_cores(seconds: float = 0.1) -> float:
    """Cores busy with other processes, from /proc/stat over `seconds` (0 where there is no /proc/stat),
    less this process's own CPU time in the same window (llama.cpp's threads may still spin after a
    decode), so what is counted is the others' work."""

    def sample():
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
        return sum(fields[:8]), fields[3] + fields[4]  # total and idle + iowait jiffies, all cores

    try:
        total, idle = sample()
        own, wall = time.process_time(), time.perf_counter()
        time.sleep(seconds)
        total_after, idle_after = sample()
        own_cores = (time.process_time() - own) / (time.perf_counter() - wall)
    except (OSError, ValueError, IndexError):
        return 0.0
    elapsed = total_after - total
    if elapsed <= 0:
        return 0.0
    busy = (elapsed - (idle_after - idle)) / elapsed * (os.cpu_count() or 1)
    return max(0.0, busy - own_cores)
