"""The one module of the runtime that talks to llama-cpp-python: its bindings of llama.cpp's C API for
models, contexts, LoRA adapters, samplers and llama.cpp's log (its `Llama` class only reads a GGUF's
metadata). It reaches no private attribute. Raising the llama-cpp-python pin means reading this file
(tests/test_llama_cpp_api.py checks what it uses).

- `LlamaModel`: a GGUF's weights and vocabulary, and the contexts made with them (`new_context`);
- `Context`: one llama.cpp context: calls of (token, position, seq_id, wants_logits) rows, their logits as
  zero-copy numpy views (the rule expert adds to them in place), its KV memory by sequence, its threads
  and LoRA adapters;
- samplers: llama.cpp's native chain for temperature / top-p / top-k / min-p;
- the vocabulary as llguidance reads it (`grammar_tokenizer`), for grammars and JSON schemas;
- the log: kept in a small buffer (shown with IJT_LOCAL_VERBOSE=1) so that a failed load is explained in one
  line instead of a screenful.
"""

from __future__ import annotations

import collections
import ctypes
import os
import sys
import threading
from pathlib import Path

import llama_cpp
import numpy as np

from ..errors import UserError

Rows = list[tuple[int, int, int, bool]]  # (token, position, seq_id, wants_logits) per row of one call

# ---- llama.cpp's log -------------------------------------------------------------------------------

_log_lines: collections.deque = collections.deque(maxlen=20)
_log_callback = None


def capture_llama_logs() -> None:
    """Route llama.cpp's log into the buffer (once per process)."""
    global _log_callback
    if _log_callback is not None:
        return
    verbose = bool(os.environ.get("IJT_LOCAL_VERBOSE"))

    @llama_cpp.llama_log_callback
    def callback(level, text, user_data):
        line = text.decode("utf-8", errors="replace")
        if level in (3, 4) and line.strip():  # ggml's WARN and ERROR
            _log_lines.append(line.strip())
        if verbose:
            print(line, end="", file=sys.stderr)

    _log_callback = callback
    llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))


def clear_llama_log() -> None:
    _log_lines.clear()


def first_llama_error() -> str:
    """The first error llama.cpp logged since the log was last cleared: the root cause, usually."""
    errors = [line for line in _log_lines if "error" in line.lower() or "fail" in line.lower()]
    return errors[0] if errors else (_log_lines[0] if _log_lines else "")


# ---- what this build can do ------------------------------------------------------------------------


def default_gpu_layers() -> int:
    """All layers on a GPU backend (Metal, CUDA) when llama.cpp was built with one, else none."""
    return -1 if llama_cpp.llama_supports_gpu_offload() else 0


def max_parallel_sequences() -> int:
    return llama_cpp.llama_max_parallel_sequences()


def backend_identity() -> dict:
    """What, besides the model file, decides which kernels compute a call: the bindings' version and
    llama.cpp's build and CPU features ("AVX512_BF16 = 1 | ...") and backends."""
    return {
        "llama_cpp_python": llama_cpp.__version__,
        "system": llama_cpp.llama_print_system_info().decode(errors="replace").strip(),
        "gpu_offload": bool(llama_cpp.llama_supports_gpu_offload()),
    }


def read_metadata(path: Path) -> tuple[dict, int]:
    """(the GGUF's metadata, its vocabulary size), read by llama.cpp with the vocabulary only."""
    capture_llama_logs()
    try:
        reader = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    except (ValueError, RuntimeError) as exc:
        raise UserError(f"{path}: llama.cpp cannot read this model ({exc})") from None
    try:
        return dict(reader.metadata), reader.n_vocab()
    finally:
        reader.close()


# ---- a context ---------------------------------------------------------------------------------------


class Context:
    """One llama.cpp context and the llama_batch its calls are written into."""

    def __init__(self, pointer, n_vocab: int, n_batch: int, where: str):
        self.pointer = pointer
        self.n_vocab = n_vocab
        self.where = where  # named in a decode error: "context 4096 tokens"
        self._memory = llama_cpp.llama_get_memory(pointer)
        self._batch = llama_cpp.llama_batch_init(n_batch, 0, 1)

    def decode(self, rows: Rows) -> None:
        """One llama_decode of `rows`."""
        batch = self._batch
        for n, (token, position, seq_id, wants_logits) in enumerate(rows):
            batch.token[n], batch.pos[n], batch.n_seq_id[n] = token, position, 1
            batch.seq_id[n][0], batch.logits[n] = seq_id, int(wants_logits)
        batch.n_tokens = len(rows)
        code = llama_cpp.llama_decode(self.pointer, batch)
        if code != 0:
            raise UserError(f"llama.cpp decode failed (code {code}; {self.where})")

    def logits_row(self, index: int = -1) -> np.ndarray:
        """The logits of output `index` of the last decode (-1: the last), a view into llama.cpp's buffer."""
        pointer = llama_cpp.llama_get_logits_ith(self.pointer, index)
        return np.ctypeslib.as_array(pointer, shape=(self.n_vocab,))

    def logits_rows(self, count: int) -> np.ndarray:
        """The first `count` outputs of the last decode as one [count, vocab] view."""
        pointer = llama_cpp.llama_get_logits(self.pointer)
        return np.ctypeslib.as_array(pointer, shape=(count, self.n_vocab))

    def sample(self, sampler, index: int) -> int:
        """A token from output `index` through a sampler chain (`make_sampler`)."""
        return llama_cpp.llama_sampler_sample(sampler, self.pointer, index)

    # KV memory, by sequence

    def remove(self, seq_id: int, start: int = -1, end: int = -1) -> bool:
        """Drop sequence `seq_id`'s cells at positions [start, end) (-1: open). False if llama.cpp cannot
        (a partial removal from a recurrent or sliding-window cache)."""
        return bool(llama_cpp.llama_memory_seq_rm(self._memory, seq_id, start, end))

    def copy(self, seq_id: int, target: int) -> None:
        """Share sequence `seq_id`'s cells with sequence `target` too."""
        llama_cpp.llama_memory_seq_cp(self._memory, seq_id, target, -1, -1)

    def move(self, seq_id: int, target: int) -> None:
        """Move sequence `seq_id`'s cells to sequence `target`."""
        llama_cpp.llama_memory_seq_cp(self._memory, seq_id, target, -1, -1)
        llama_cpp.llama_memory_seq_rm(self._memory, seq_id, -1, -1)

    def first_position(self, seq_id: int) -> int:
        return llama_cpp.llama_memory_seq_pos_min(self._memory, seq_id)

    def clear(self) -> None:
        llama_cpp.llama_memory_clear(self._memory, True)

    # settings

    def set_threads(self, threads: int) -> None:
        llama_cpp.llama_set_n_threads(self.pointer, threads, threads)

    def threads(self) -> int:
        return llama_cpp.llama_n_threads(self.pointer)

    def set_adapters(self, adapters: list[tuple[object, float]]) -> None:
        """Use exactly these (LoRA adapter handle, scale) pairs (none: the base model)."""
        count = len(adapters)
        handles = (llama_cpp.llama_adapter_lora_p_ctypes * max(count, 1))(*[a for a, _ in adapters])
        scales = (ctypes.c_float * max(count, 1))(*[s for _, s in adapters])
        if llama_cpp.llama_set_adapters_lora(self.pointer, handles, count, scales):
            raise UserError("llama.cpp could not apply the LoRA adapters to this model")

    def close(self) -> None:
        if self._batch is not None:
            llama_cpp.llama_batch_free(self._batch)
            self._batch = None
        if self.pointer is not None:
            llama_cpp.llama_free(self.pointer)
            self.pointer = None


# ---- a model -----------------------------------------------------------------------------------------

_backend_started = threading.Lock()
_backend_ready = False


def _start_backend() -> None:
    """llama.cpp's backends, initialised once per process before the first model loads."""
    global _backend_ready
    with _backend_started:
        if not _backend_ready:
            llama_cpp.llama_backend_init()
            _backend_ready = True


class LlamaModel:
    """A GGUF loaded by llama.cpp: its weights and vocabulary. It makes no context of its own: a Session
    makes one for scoring when it first scores, and replies decode in BatchDecoder's (`new_context`), so a
    chat or a server holds only the contexts it uses."""

    def __init__(self, path: Path, n_ctx: int, n_batch: int, threads: int, gpu_layers: int | None, repack: bool = True):
        capture_llama_logs()
        _start_backend()
        self.gpu_layers = default_gpu_layers() if gpu_layers is None else gpu_layers
        self.repack = repack
        if not Path(path).is_file():
            raise UserError(f"{path}: no such model file")
        params = llama_cpp.llama_model_default_params()
        params.n_gpu_layers = self.gpu_layers
        params.use_extra_bufts = repack  # repacks CPU weights into gemm tiles (llama.cpp's default: on)
        clear_llama_log()
        self._model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
        if not self._model:
            raise UserError(f"{path}: llama.cpp cannot load this model ({first_llama_error() or 'no reason given'})")
        self.path = path
        self.n_batch = n_batch
        self.n_ctx = n_ctx  # the tokens a Session's context holds (a sequence's at most, in BatchDecoder's)
        self._vocab = llama_cpp.llama_model_get_vocab(self._model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self._vocab)
        self.eos_id = llama_cpp.llama_vocab_eos(self._vocab)
        self.bos_id = llama_cpp.llama_vocab_bos(self._vocab)
        self._adapters: list = []  # LoRA handles loaded and not yet freed
        # One piece buffer per thread: serve's engine thread decodes reply tokens while its request thread
        # writes logprobs tokens, and ctypes lets both into llama_token_to_piece at once.
        self._piece_buffers = threading.local()

    # tokens

    def tokenize(self, text: str, add_bos: bool, special: bool) -> list[int]:
        data = text.encode("utf-8")
        size = len(data) + 2  # a token holds at least one byte; BOS and EOS may be added
        tokens = (llama_cpp.llama_token * size)()
        n = llama_cpp.llama_tokenize(self._vocab, data, len(data), tokens, size, add_bos, special)
        if n < 0:  # more tokens than bytes (special tokens added): ask again with the count llama.cpp gave
            size = -n
            tokens = (llama_cpp.llama_token * size)()
            n = llama_cpp.llama_tokenize(self._vocab, data, len(data), tokens, size, add_bos, special)
        return list(tokens[:n])

    def detokenize(self, tokens: list[int]) -> bytes:
        """The tokens' bytes, special tokens left out; a space after a leading BOS dropped, as llama.cpp's
        detokenizer does for SentencePiece models."""
        text = b"".join(self.piece(token) for token in tokens)
        if tokens and tokens[0] == self.bos_id and text.startswith(b" "):
            text = text[1:]
        return text

    def piece(self, token: int, special: bool = False) -> bytes:
        """The bytes of one token."""
        buffer = getattr(self._piece_buffers, "buffer", None)
        if buffer is None:
            buffer = self._piece_buffers.buffer = ctypes.create_string_buffer(64)
        n = llama_cpp.llama_token_to_piece(self._vocab, token, buffer, 64, 0, special)
        if n < 0:  # longer than the buffer: ask again with the size llama.cpp reported
            long_buffer = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(self._vocab, token, long_buffer, -n, 0, special)
            return long_buffer.raw[:n]
        return buffer.raw[:n]

    def is_end(self, token: int) -> bool:
        return bool(llama_cpp.llama_vocab_is_eog(self._vocab, token))

    def adds_bos(self) -> bool:
        return bool(llama_cpp.llama_vocab_get_add_bos(self._vocab))

    @property
    def vocab(self):
        """llama.cpp's vocabulary pointer (for llama.cpp's own grammar sampler in scripts/bench_grammar.py)."""
        return self._vocab

    def end_tokens(self) -> list[int]:
        """The end-of-generation tokens among the vocabulary's named ones (end of text, end of turn)."""
        named = {llama_cpp.llama_vocab_eos(self._vocab), llama_cpp.llama_vocab_eot(self._vocab)}
        return sorted(t for t in named if t >= 0 and self.is_end(t))

    def grammar_tokenizer(self):
        """llguidance's tokenizer over this vocabulary (~1 s for 262k tokens: cache it), every
        end-of-generation token counted as its end of text. As llguidance.llamacpp builds it, through
        public bindings only (that helper reads a private attribute and a deprecated binding, which warns
        once per token): control tokens are marked with a leading 0xff byte, and llguidance tokenizes text
        through llama.cpp's own llama_tokenize."""
        from llguidance import LLTokenizer

        control = llama_cpp.LLAMA_TOKEN_ATTR_CONTROL
        user_defined = llama_cpp.LLAMA_TOKEN_ATTR_USER_DEFINED
        tokens = []
        for token in range(self.n_vocab):
            piece = self.piece(token, special=True)
            attr = llama_cpp.llama_vocab_get_attr(self._vocab, token)
            if attr & control or (attr & user_defined and piece.startswith(b"<") and piece.endswith(b">")):
                piece = b"\xff" + piece
            tokens.append(piece)
        return LLTokenizer.from_llamacpp(
            tokens=tokens,
            vocab_ptr=self._vocab,
            tokenize_fptr=ctypes.cast(llama_cpp.llama_tokenize, ctypes.c_void_p).value,
            eos_token=self.end_tokens(),
            slices=None,
        )

    # more contexts over the same weights

    def new_context(self, n_ctx: int, n_seq: int, threads: int) -> Context:
        """A context for `n_seq` sequences with a KV stream each (`kv_unified` off: a sequence's attention
        reads only its own cells), `n_ctx` cells in all. ValueError when llama.cpp cannot make it."""
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_batch = params.n_ubatch = self.n_batch
        params.n_seq_max = n_seq
        params.kv_unified = False
        params.n_threads = params.n_threads_batch = threads
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED  # one attention kernel everywhere
        clear_llama_log()
        pointer = llama_cpp.llama_init_from_model(self._model, params)
        if not pointer:
            raise ValueError(first_llama_error() or "llama.cpp could not make the context")
        where = f"context of {n_ctx} tokens" if n_seq == 1 else f"{n_seq} sequences of {n_ctx // n_seq} tokens"
        return Context(pointer, self.n_vocab, self.n_batch, where)

    # LoRA adapters

    def load_adapter(self, path: Path):
        """A LoRA adapter handle for these weights; UserError naming llama.cpp's reason when it cannot.
        Free it with `free_adapter`, or leave it to be freed with the model."""
        if not path.is_file():
            raise UserError(f"{path}: no such adapter file")
        clear_llama_log()
        handle = llama_cpp.llama_adapter_lora_init(self._model, str(path).encode())
        if not handle:
            detail = first_llama_error()
            raise UserError(
                f"{path}: llama.cpp cannot load this LoRA adapter for {self.path.name}"
                + (f" ({detail})" if detail else "")
            )
        self._adapters.append(handle)
        return handle

    def free_adapter(self, handle) -> None:
        """Free an adapter no context uses any more."""
        self._adapters.remove(handle)
        llama_cpp.llama_adapter_lora_free(handle)

    def close(self) -> None:
        """Free the adapters and the weights (close the contexts made with them first)."""
        for handle in self._adapters:
            llama_cpp.llama_adapter_lora_free(handle)
        self._adapters.clear()
        if self._model:
            llama_cpp.llama_model_free(self._model)
            self._model = None


# ---- samplers ----------------------------------------------------------------------------------------


def make_sampler(temperature: float, top_p: float, top_k: int, seed: int, min_p: float = 0.0):
    """llama.cpp's sampler chain (top-k, top-p, min-p, temperature, seeded draw), or None for greedy (an argmax over
    the logits row: the same choice as llama.cpp's greedy sampler without its 262k-entry candidate array).
    Free it with `free_sampler`."""
    if temperature <= 0:
        return None
    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    if top_k > 0:
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_top_k(top_k))
    if top_p < 1.0:
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_top_p(top_p, 1))
    if min_p > 0.0:
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_min_p(min_p, 1))
    llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_temp(temperature))
    llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_dist(seed & 0xFFFFFFFF))
    return chain


def free_sampler(sampler) -> None:
    if sampler is not None:
        llama_cpp.llama_sampler_free(sampler)
