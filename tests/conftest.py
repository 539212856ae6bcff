"""Shared fixtures. Tests never write into the user's results/ except the notebook tests (by design:
their smoke results feed the scoreboard)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def root() -> Path:
    return ROOT


@pytest.fixture
def results_tmp(tmp_path, monkeypatch) -> Path:
    """Point $PHENOMENA_RESULTS at a temporary folder."""
    folder = tmp_path / "results"
    monkeypatch.setenv("PHENOMENA_RESULTS", str(folder))
    return folder
