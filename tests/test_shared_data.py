"""Where data files are found: the data home ($IJT_LOCAL_DATA, else $IJT_LOCAL_HOME/data), nowhere else."""

from __future__ import annotations

from ijt_local.data.home import data_home, shared_data_file, shared_data_path


def test_ijt_local_data_is_the_home_and_a_missing_file_is_named_there(tmp_path, monkeypatch):
    (tmp_path / "val").mkdir()
    (tmp_path / "val" / "val.jsonl").write_text('{"instruction": "hi"}\n')
    monkeypatch.setenv("IJT_LOCAL_DATA", str(tmp_path))
    assert data_home() == tmp_path
    assert shared_data_file("val/val.jsonl") == tmp_path / "val" / "val.jsonl"
    assert shared_data_path() == tmp_path
    assert shared_data_file("no/such.jsonl") is None
    assert shared_data_path("no/such.jsonl") == tmp_path / "no" / "such.jsonl"


def test_without_ijt_local_data_the_home_is_under_ijt_local_home_and_nothing_is_guessed(tmp_path, monkeypatch):
    monkeypatch.delenv("IJT_LOCAL_DATA", raising=False)
    monkeypatch.setenv("IJT_LOCAL_HOME", str(tmp_path / "cache"))
    sibling = tmp_path / "shared" / "data" / "val"  # ../shared/data beside the working directory
    sibling.mkdir(parents=True)
    (sibling / "val.jsonl").write_text('{"instruction": "hi"}\n')
    (tmp_path / "repo").mkdir()
    monkeypatch.chdir(tmp_path / "repo")
    assert data_home() == tmp_path / "cache" / "data"
    assert shared_data_file("val/val.jsonl") is None
    assert shared_data_path("val/val.jsonl") == tmp_path / "cache" / "data" / "val" / "val.jsonl"
