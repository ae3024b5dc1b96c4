"""The rule expert (paper §6): expert.py (the rules, numpy, tokenizer-agnostic; default.toml holds their
numbers), poe.py (the product's normalised log-probability), vocab_cache.py (each model's token texts)."""
