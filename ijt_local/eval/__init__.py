"""Evaluation: what implicit instruction tuning did, measured.

    specs.py        SPEC grammar: model [+adapter.gguf[@scale]]... [+poe[:rules]]
    prompt_sets.py  instruction files (instruction / prompt / messages rows)
    generations.py  generations cached per model, resumable
    metrics.py      behaviour metrics: stop, role leak, echo, repetition, length
    compare.py      `ijt-local compare`: results.json + report.html
    report.py       the static HTML report
    judge.py        `eval winrate`: pairwise judgements in both orders, cached; an OpenAI-compatible endpoint
    local_judge.py  the in-process judge: a chat GGUF read through its next-token probabilities
    judge_prompts.py  the judge's prompt forms (AlpacaEval 2, direct question, rubric, criteria)
    winrate_stats.py  win rate, standard error, length-controlled win rate
    judge_signals.py  what a judge's preferences follow: repetition, echo, length
    ranking.py      `eval ranking`: own response vs a random other (paper §4.2)
    ifeval/         `eval ifeval`: the 25 IFEval checkers and their scoring

No module here imports torch.
"""
