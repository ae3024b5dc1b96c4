"""`ijt-local serve`: app.py (the OpenAI-compatible FastAPI app), engine.py (a model's decode thread over a
BatchDecoder), spec_engines.py (served models, rule sets, one engine per LoRA adapter set), logprobs.py,
cli.py (the verb), static/ (the side-by-side page)."""
