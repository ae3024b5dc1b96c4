"""Shared fixtures: the two real embedded GGUFs, opened once per test session (only by tests marked `slow`);
and the data home of this repository's development layout."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DEVELOPMENT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


REAL_MODEL_FIXTURES = {"gemma_session", "smollm_session", "real_session"}


def pytest_configure(config):
    # Before collection: test modules read data paths at import. An explicit IJT_LOCAL_DATA wins.
    if not os.environ.get("IJT_LOCAL_DATA") and DEVELOPMENT_DATA.is_dir():
        os.environ["IJT_LOCAL_DATA"] = str(DEVELOPMENT_DATA)


def pytest_collection_modifyitems(config, items):
    """`slow` marks every test that opens a real GGUF (docs/design.md): one that asks for a real model's
    session without the mark stops the run, so `-m "not slow"` never loads them."""
    unmarked = [
        item.nodeid
        for item in items
        if REAL_MODEL_FIXTURES & set(getattr(item, "fixturenames", ())) and item.get_closest_marker("slow") is None
    ]
    if unmarked:
        raise pytest.UsageError("mark these @pytest.mark.slow, they open a real model: " + ", ".join(unmarked))


@pytest.fixture(scope="session")
def gemma_session():
    from ijt_local.runtime.session import Session

    session = Session("default", n_ctx=2048)
    yield session
    session.close()


@pytest.fixture(scope="session")
def smollm_session():
    from ijt_local.runtime.session import Session

    session = Session("smollm2-135m-instruct", n_ctx=2048)
    yield session
    session.close()


@pytest.fixture(params=["gemma", "smollm"])
def real_session(request, gemma_session, smollm_session):
    """Each test using this runs once per real vocabulary (262,144 and 49,152 tokens)."""
    return gemma_session if request.param == "gemma" else smollm_session
