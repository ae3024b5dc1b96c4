"""Where the shared data folder is found: $IJT_LOCAL_DATA first, then ../shared/data beside the repository."""

from __future__ import annotations

from pathlib import Path

from ijt_local.shared_data import shared_data_file, shared_data_path

SIBLING = Path(__file__).resolve().parents[2] / "shared" / "data"


def test_ijt_local_data_comes_first_and_a_missing_file_is_named_beside_the_repository(tmp_path, monkeypatch):
    (tmp_path / "val").mkdir()
    (tmp_path / "val" / "val.jsonl").write_text('{"instruction": "hi"}\n')
    monkeypatch.setenv("IJT_LOCAL_DATA", str(tmp_path))
    assert shared_data_file("val/val.jsonl") == tmp_path / "val" / "val.jsonl"
    assert shared_data_path() == tmp_path
    assert shared_data_file("no/such.jsonl") is None
    assert shared_data_path("no/such.jsonl") == SIBLING / "no" / "such.jsonl"
