"""Evaluation: what implicit instruction tuning did, measured.

    cli.py          `compare` and the `eval` group (ifeval, winrate, ranking): parse, call, print
    prompt_sets.py  instruction files (instruction / prompt / messages rows)
    generations.py  generations cached per model, resumable
    metrics.py      behaviour metrics: stop, role leak, echo, repetition, length
    compare.py      `ijt-local compare`: results.json + report.html
    report.py       the static HTML report
    judge.py        `eval winrate`: pairwise judgements in both orders, cached; an OpenAI-compatible endpoint
    local_judge.py  the in-process judge: a chat GGUF read through its next-token probabilities
    judge_prompts.py  the judge's prompt forms (AlpacaEval 2, direct question, rubric, criteria)
    reference_answers.py  reference answers for reference-guided judging
    reference_judges.py   reference-guided judges (chrF, ROUGE-L, length, the LLM judge) and their weights
    judge_agreement.py    agreement with GPT-4 on the AlpacaEval dev pairs; the reference judges' cross-fit
    winrate_stats.py  win rate, standard error, length-controlled win rate
    judge_signals.py  what a judge's preferences follow: repetition, echo, length
    style.py        style adherence of single-task models
    ranking.py      `eval ranking`: own response vs a random other (paper §4.2)
    ifeval/         `eval ifeval`: the 25 IFEval checkers and their scoring

The SPEC grammar (model [+adapter.gguf[@scale]]... [+poe[:rules]]) is ijt_local/specs.py.

No module here imports torch.
"""
