"""Laptop-scale replication of the paper's three findings, in one command: `ijt-local replicate`.

budgets.py     how large a run is (smoke, laptop, paper) and the choices every budget shares
lineup.py      the models a run trains, evaluates and judges, and their names
run_folder.py  the run folder: whose run it is, finished stages and their time, the archive
stages.py      data, train, convert, evaluate, winrate (in this process; training in a subprocess)
plan.py        --dry-run: rows, steps, tokens and hours, measured on this machine
report.py      OUT/results.json, and OUT/results.md through markdown.py
markdown.py    OUT/results.md rendered from results.json
cli.py         the `replicate` command
"""
