"""Evaluation: what implicit instruction tuning did, measured.

    specs.py        SPEC grammar: model [+adapter.gguf[@scale]]... [+poe[:rules]]
    prompt_sets.py  instruction files (instruction / prompt / messages rows)
    generations.py  generations cached per model, resumable
    metrics.py      behaviour metrics: stop, role leak, echo, repetition, length
    compare.py      `ijt-local compare`: results.json + report.html
    report.py       the static HTML report
    judge.py        `eval winrate`: pairwise judge through an OpenAI-compatible endpoint
    ranking.py      `eval ranking`: own response vs a random other (paper §4.2)
    ifeval/         `eval ifeval`: the 25 IFEval checkers and their scoring

No module here imports torch.
"""
