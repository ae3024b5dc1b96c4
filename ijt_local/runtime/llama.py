"""llama.cpp's log, captured: kept in a small buffer (shown with IJT_LOCAL_VERBOSE=1) so that a failed load
can be explained in one line instead of a screenful."""

from __future__ import annotations

import collections
import ctypes
import os
import sys

_log_lines: collections.deque = collections.deque(maxlen=20)
_log_callback = None


def capture_llama_logs() -> None:
    """Route llama.cpp's log into the buffer (once per process)."""
    global _log_callback
    import llama_cpp

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
