"""`ijt-local rules fit`: search.py (the Optuna search over the rule numbers, dev/test splits) and cli.py."""
