"""Shared fixtures: the two real embedded GGUFs, opened once per test session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def gemma_session():
    from ijt_local.runtime import Session

    session = Session("default", n_ctx=2048)
    yield session
    session.close()


@pytest.fixture(scope="session")
def smollm_session():
    from ijt_local.runtime import Session

    session = Session("smollm2-135m-instruct", n_ctx=2048)
    yield session
    session.close()


@pytest.fixture(params=["gemma", "smollm"])
def real_session(request, gemma_session, smollm_session):
    """Each test using this runs once per real vocabulary (262,144 and 49,152 tokens)."""
    return gemma_session if request.param == "gemma" else smollm_session
