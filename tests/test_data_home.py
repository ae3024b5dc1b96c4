"""`ijt-local data fetch|list` and set names on verbs, against a real HTTP server on 127.0.0.1 that mirrors the
upstream URLs' paths (`$IJT_LOCAL_DATA_MIRROR/HOST/PATH`). No network, no model."""

from __future__ import annotations

import hashlib
import json
import re
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from ijt_local.cli import cli
from ijt_local.data import sets
from ijt_local.data.sets import SETS, DataFile, DataSet, alpaca_eval_instructions

UPSTREAM = "https://raw.githubusercontent.com/owner/repo/0123abcd"
VAL = b'{"instruction": "Name a colour."}\n{"instruction": "Count to three."}\n'
OUTPUTS = [
    {"dataset": "helpful_base", "instruction": "Say hi.", "output": "Hi!", "generator": "text_davinci_003"},
    {"dataset": "oasst", "instruction": "Caf\u00e9?", "output": "Yes.", "generator": "text_davinci_003"},
]
INSTRUCTIONS = (
    b'{"instruction": "Say hi.", "dataset": "helpful_base"}\n{"instruction": "Caf\\u00e9?", "dataset": "oasst"}\n'
)
BIG = bytes(range(256)) * 800  # 200 kB: big enough to be cut off mid-file


def sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def tiny_sets(val_sha: str = sha256(VAL)) -> dict[str, DataSet]:
    return {
        "val": DataSet(
            "val",
            "two instructions",
            "a test",
            "Apache-2.0",
            "2024",
            (DataFile("val/val.jsonl", val_sha, f"{UPSTREAM}/eval/val.jsonl", name="val"),),
        ),
        "alpaca_eval": DataSet(
            "alpaca_eval",
            "instructions derived from model outputs",
            "a test",
            "CC BY-NC 4.0",
            "2025",
            (
                DataFile(
                    "alpaca_eval/alpaca_eval.jsonl",
                    sha256(INSTRUCTIONS),
                    f"{UPSTREAM}/results/model_outputs.json",
                    alpaca_eval_instructions,
                    name="alpaca_eval",
                ),
            ),
        ),
        "big": DataSet(
            "big",
            "one larger file",
            "a test",
            "MIT",
            "2021",
            (DataFile("big/big.bin", sha256(BIG), f"{UPSTREAM}/big.bin"),),
        ),
    }


class Mirror(ThreadingHTTPServer):
    """Serves `root/HOST/PATH`; honours `Range: bytes=N-` when `ranges`; cuts a path's first answer short
    after `cut_after[path]` bytes of its body; records (path, Range header) per request."""

    daemon_threads = True

    def __init__(self, root: Path):
        super().__init__(("127.0.0.1", 0), MirrorHandler)
        self.root = root
        self.ranges = True
        self.cut_after: dict[str, int] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.url = f"http://127.0.0.1:{self.server_address[1]}/"

    def put(self, url: str, content: bytes) -> None:
        parts = urllib.parse.urlsplit(url)
        path = self.root / parts.netloc / parts.path.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)

    def paths(self) -> list[str]:
        return [path for path, _ in self.requests]


class MirrorHandler(BaseHTTPRequestHandler):
    def do_GET(self):
        server: Mirror = self.server
        requested = self.headers.get("Range")
        server.requests.append((self.path, requested))
        path = server.root / urllib.parse.unquote(self.path.lstrip("/"))
        if not path.is_file():
            self.send_error(404)
            return
        content = path.read_bytes()
        start = int(re.match(r"bytes=(\d+)-", requested).group(1)) if requested and server.ranges else 0
        if start >= len(content) > 0:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(content)}")
            self.end_headers()
            return
        body = content[start:]
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(content) - 1}/{len(content)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        cut = server.cut_after.pop(self.path, None)
        self.wfile.write(body if cut is None else body[:cut])  # HTTP/1.0: the connection closes after this

    def log_message(self, *args):
        pass


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    server = Mirror(tmp_path / "mirror")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    monkeypatch.setenv("IJT_LOCAL_DATA_MIRROR", server.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def home(tmp_path, monkeypatch):
    path = tmp_path / "home"
    monkeypatch.setenv("IJT_LOCAL_DATA", str(path))
    return path


@pytest.fixture
def tiny(monkeypatch, mirror):
    monkeypatch.setattr(sets, "SETS", tiny_sets())
    mirror.put(f"{UPSTREAM}/eval/val.jsonl", VAL)
    mirror.put(f"{UPSTREAM}/results/model_outputs.json", json.dumps(OUTPUTS, indent=2).encode())
    mirror.put(f"{UPSTREAM}/big.bin", BIG)
    return sets.SETS


def run(*args):
    return CliRunner().invoke(cli, list(args))


def one_error_line(result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    return lines[0]


def leftovers(home: Path) -> list[str]:
    return sorted(p.name for p in home.rglob("*") if p.name.endswith((".partial", ".derived")))


def test_fetch_places_each_file_with_its_content_then_skips_it(home, mirror, tiny):
    result = run("data", "fetch", "val", "alpaca_eval")
    assert result.exit_code == 0, result.output
    assert (home / "val" / "val.jsonl").read_bytes() == VAL
    assert (home / "alpaca_eval" / "alpaca_eval.jsonl").read_bytes() == INSTRUCTIONS  # outputs dropped
    assert f"val: fetched 1 of 1 files in {home / 'val'} (licence: Apache-2.0)" in result.output
    assert "alpaca_eval: fetched 1 of 1 files" in result.output and "(licence: CC BY-NC 4.0)" in result.output
    assert "sha256 " + sha256(VAL) in (home / "val" / "SOURCE.md").read_text()
    assert leftovers(home) == []

    asked = len(mirror.requests)
    again = run("data", "fetch", "val")
    assert again.exit_code == 0 and "val: already present" in again.output
    assert len(mirror.requests) == asked


def test_data_root_names_another_home(home, mirror, tiny, tmp_path):
    other = tmp_path / "other"
    assert run("data", "fetch", "val", "--data-root", str(other)).exit_code == 0
    assert (other / "val" / "val.jsonl").read_bytes() == VAL and not home.exists()
    listed = run("data", "list", "--data-root", str(other)).output.splitlines()
    assert listed[0] == f"data home: {other}" and listed[1].split()[:2] == ["val", "present"]


def test_list_shows_present_missing_and_damaged(home, mirror, tiny):
    assert run("data", "fetch", "val", "big").exit_code == 0
    (home / "big" / "big.bin").write_bytes(b"not the file")
    listed = run("data", "list")
    assert listed.exit_code == 0, listed.output
    lines = {line.split()[0]: line for line in listed.output.splitlines()[1:]}
    assert listed.output.splitlines()[0] == f"data home: {home} ($IJT_LOCAL_DATA)"
    assert re.match(rf"val +present +{len(VAL)} B +{re.escape(str(home / 'val'))} +Apache-2.0$", lines["val"])
    assert re.match(r"alpaca_eval +missing +- ", lines["alpaca_eval"])
    assert re.match(r"big +damaged \(big.bin\) ", lines["big"])


def test_a_bad_sha256_is_one_line_and_leaves_no_file(home, mirror, tiny, monkeypatch):
    monkeypatch.setattr(sets, "SETS", tiny_sets(val_sha="0" * 64))
    line = one_error_line(run("data", "fetch", "val"))
    assert line.startswith("Error: val/val.jsonl: sha256 ") and "is not the expected 0000000000000000…" in line
    assert not (home / "val" / "val.jsonl").exists()
    assert leftovers(home) == []


def test_a_download_cut_off_mid_file_resumes_where_it_stopped(home, mirror, tiny):
    path = "/raw.githubusercontent.com/owner/repo/0123abcd/big.bin"
    mirror.cut_after[path] = 70_000
    result = run("data", "fetch", "big")
    assert result.exit_code == 0, result.output
    assert (home / "big" / "big.bin").read_bytes() == BIG
    assert mirror.requests == [(path, None), (path, "bytes=70000-")]
    assert leftovers(home) == []


def test_a_partial_file_left_by_an_earlier_run_is_resumed(home, mirror, tiny):
    (home / "big").mkdir(parents=True)
    (home / "big" / "big.bin.partial").write_bytes(BIG[:123_456])
    assert run("data", "fetch", "big").exit_code == 0
    assert (home / "big" / "big.bin").read_bytes() == BIG
    assert [rng for _, rng in mirror.requests] == ["bytes=123456-"]


def test_a_server_without_ranges_makes_the_download_start_again(home, mirror, tiny):
    mirror.ranges = False
    (home / "big").mkdir(parents=True)
    (home / "big" / "big.bin.partial").write_bytes(b"stale bytes of some earlier file")
    assert run("data", "fetch", "big").exit_code == 0
    assert (home / "big" / "big.bin").read_bytes() == BIG
    assert leftovers(home) == []


def test_a_download_that_keeps_breaking_off_says_to_run_again_and_keeps_what_came(home, mirror, tiny, monkeypatch):
    monkeypatch.setattr("ijt_local.data.fetch.ATTEMPTS", 1)
    mirror.cut_after["/raw.githubusercontent.com/owner/repo/0123abcd/big.bin"] = 1000
    line = one_error_line(run("data", "fetch", "big"))
    assert "big/big.bin: the download from" in line and line.endswith("run the same command again to resume")
    assert not (home / "big" / "big.bin").exists()
    assert (home / "big" / "big.bin.partial").read_bytes() == BIG[:1000]


def test_an_unknown_name_is_one_line_listing_the_sets(home):
    line = one_error_line(run("data", "fetch", "val", "alpaca"))
    assert line == f"Error: alpaca: no such data set (known: {', '.join(SETS)}, or all)"
    assert not home.exists()


def test_an_unreachable_server_is_one_line(home, monkeypatch):
    monkeypatch.setenv("IJT_LOCAL_DATA_MIRROR", "http://127.0.0.1:9/")  # discard port: nothing listens
    line = one_error_line(run("data", "fetch", "val"))
    assert line.startswith("Error: val/val.jsonl: cannot download http://127.0.0.1:9/raw.githubusercontent.com/")
    assert not (home / "val" / "val.jsonl").exists()


def test_a_missing_file_on_the_server_is_one_line(home, mirror, tiny):
    (mirror.root / "raw.githubusercontent.com" / "owner" / "repo" / "0123abcd" / "eval" / "val.jsonl").unlink()
    line = one_error_line(run("data", "fetch", "val"))
    assert line.startswith("Error: val/val.jsonl: http://127.0.0.1:") and line.endswith("answered HTTP 404 Not Found")


def test_fetch_all_fetches_what_it_can_and_fails_naming_the_rest(home, mirror, tiny, monkeypatch):
    by_hand = DataFile("mbpp/mbpp.jsonl", "0" * 64, None, by_hand="see SOURCE.md")
    monkeypatch.setattr(
        sets, "SETS", {**tiny, "mbpp": DataSet("mbpp", "tasks", "a test", "CC BY 4.0", "2021", (by_hand,))}
    )
    result = run("data", "fetch", "all")
    assert result.exit_code == 1
    assert "Error: mbpp/mbpp.jsonl: no public download is known; place it by hand: see SOURCE.md" in result.output
    assert result.output.strip().splitlines()[-1] == "Error: not fetched: mbpp (see above)"
    assert (home / "big" / "big.bin").read_bytes() == BIG


@pytest.mark.parametrize(
    "args",
    [
        ["compare", "--model", "a=default", "--input", "val", "--out", "OUT"],
        ["generate", "--input", "val", "--out", "OUT"],
    ],
)
def test_a_set_missing_from_the_home_names_the_fetch_command(tmp_path, monkeypatch, args):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("IJT_LOCAL_DATA", str(empty))
    line = one_error_line(run(*[str(tmp_path / "out") if arg == "OUT" else arg for arg in args]))
    assert line == (
        f"Error: val: not in the data home {empty} (run: ijt-local data fetch val, "
        "or set IJT_LOCAL_DATA to a folder that has it)"
    )
    assert not (tmp_path / "out").exists()


DEVELOPMENT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.mark.skipif(not (DEVELOPMENT_DATA / "alpaca_eval").is_dir(), reason="needs ../shared/data")
def test_the_real_registry_rebuilds_val_and_alpaca_eval_from_upstream_shaped_files(home, mirror):
    """The registry's URLs and transforms: upstream-shaped files made from the development copy (AlpacaEval's
    JSON lists, with the fields the transforms drop) must come out byte for byte as that copy."""
    mirror.put(SETS["val"].files[0].url, (DEVELOPMENT_DATA / "val" / "val.jsonl").read_bytes())
    extra = {"price_per_example": 0.01, "output": "dropped", "dataset": "helpful_base"}
    for file in SETS["alpaca_eval"].files:
        rows = [json.loads(line) for line in (DEVELOPMENT_DATA / file.path).read_text().splitlines()]
        mirror.put(file.url, json.dumps([{**extra, **row} for row in rows], indent=2).encode())
    result = run("data", "fetch", "val", "alpaca_eval")
    assert result.exit_code == 0, result.output
    for file in SETS["val"].files + SETS["alpaca_eval"].files:
        assert (home / file.path).read_bytes() == (DEVELOPMENT_DATA / file.path).read_bytes(), file.path
    listed = run("data", "list").output
    assert re.search(r"^alpaca_eval +present ", listed, re.M) and re.search(r"^lima +missing ", listed, re.M)
