"""Running a GGUF: llama.py (the only module below llama-cpp-python's Llama), session.py (one model, single-
stream decoding and scoring), rows.py (row groups: a reply never depends on its batch), batch.py (the one
batched decode core), specs.py (SPEC grammar; RunOptions -> resolve_spec -> open_spec), conversation.py,
token_logprobs.py, cli.py (models, chat, generate)."""
