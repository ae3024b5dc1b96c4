"""IFEval: verifiable-instruction prompts, checked strictly and loosely."""
