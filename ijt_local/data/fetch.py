"""`ijt-local data fetch` and `data list`: download the paper's sets into the data home, and check them.

A file is downloaded to `<file>.partial` beside its final place, resumed with an HTTP Range request when
the server allows (else started again), checked against its sha256 and only then renamed: nothing
half-written is ever under a final name. A bad checksum removes the partial file.

`$IJT_LOCAL_DATA_MIRROR` (e.g. `http://127.0.0.1:8000/`) replaces the origin of every URL: `https://HOST/PATH`
is read from `$IJT_LOCAL_DATA_MIRROR/HOST/PATH`, the layout `wget --force-directories` writes.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..jsonl import write_atomic
from ..models import file_sha256
from .sets import DataFile, DataSet

MIRROR_ENV = "IJT_LOCAL_DATA_MIRROR"
ATTEMPTS = 3  # tries per file when the connection drops mid-download, each resuming the last
TIMEOUT = 60.0  # seconds without an answer before a download counts as failed
BLOCK = 1 << 16


class DownloadInterrupted(Exception):
    """The connection ended before the whole file came: worth resuming."""


def mirrored(url: str) -> str:
    mirror = os.environ.get(MIRROR_ENV)
    if not mirror:
        return url
    parts = urllib.parse.urlsplit(url)
    query = f"?{parts.query}" if parts.query else ""
    return f"{mirror.rstrip('/')}/{parts.netloc}{parts.path}{query}"


def partial_path(target: Path) -> Path:
    return target.with_name(target.name + ".partial")


# --- one download ------------------------------------------------------------------------------------


def _open(url: str, start: int):
    headers = {"User-Agent": "ijt-local"}
    if start:
        headers["Range"] = f"bytes={start}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT)


def _resumed_at(response) -> int | None:
    """Where a 206 answer's body starts (`Content-Range: bytes START-END/TOTAL`)."""
    match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


def _download_once(url: str, partial: Path, label: str) -> None:
    start = partial.stat().st_size if partial.exists() else 0
    try:
        response = _open(url, start)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and start:  # nothing after `start`: the partial file already holds it all
            return
        raise UserError(f"{label}: {url} answered HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise UserError(f"{label}: cannot download {url} ({getattr(exc, 'reason', exc)})") from None
    from tqdm import tqdm

    with response:
        if start and (response.status != 206 or _resumed_at(response) != start):
            start = 0  # the server ignored the Range request: start again
        length = response.headers.get("Content-Length")
        total = start + int(length) if length and length.isdigit() else None
        with (
            partial.open("ab" if start else "wb") as out,
            tqdm(total=total, initial=start, unit="B", unit_scale=True, desc=label, leave=False, disable=None) as bar,
        ):
            try:
                while block := response.read(BLOCK):
                    out.write(block)
                    bar.update(len(block))
            except (OSError, http.client.HTTPException) as exc:
                raise DownloadInterrupted(f"{type(exc).__name__} after {out.tell()} bytes") from None
            # read() ends quietly when the server closes early; only the announced length tells
            if total is not None and out.tell() < total:
                raise DownloadInterrupted(f"the connection closed after {out.tell()} of {total} bytes")


def download(url: str, partial: Path, label: str) -> None:
    """`url` into `partial`, resuming what a previous try (or run) left there."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return _download_once(url, partial, label)
        except DownloadInterrupted as exc:
            if attempt == ATTEMPTS:
                raise UserError(
                    f"{label}: the download from {url} broke off {ATTEMPTS} times ({exc}); "
                    "run the same command again to resume"
                ) from None


# --- files and sets ----------------------------------------------------------------------------------


def file_state(home: Path, file: DataFile) -> str:
    """present, missing or damaged (there, with another sha256)."""
    path = home / file.path
    if not path.is_file():
        return "missing"
    return "present" if file_sha256(path) == file.sha256 else "damaged"


def _checked_content(file: DataFile, partial: Path, url: str) -> bytes | None:
    """The bytes to place (None: the partial file itself), once their sha256 is right; else the partial
    file is removed and the error says so."""
    try:
        content = file.derive(partial.read_bytes()) if file.derive else None
    except UserError as exc:
        partial.unlink(missing_ok=True)
        raise UserError(f"{file.path}: {exc} (from {url}; removed)") from None
    got = file_sha256(partial) if content is None else hashlib.sha256(content).hexdigest()
    if got != file.sha256:
        partial.unlink(missing_ok=True)
        raise UserError(
            f"{file.path}: sha256 {got[:16]}… is not the expected {file.sha256[:16]}… (download from {url} "
            "removed; run again, or the source has changed)"
        )
    return content


def fetch_file(home: Path, file: DataFile) -> str:
    """Make `home/file.path` the right file: "present" (already there) or "fetched"."""
    target = home / file.path
    if file_state(home, file) == "present":
        return "present"
    if file.url is None:
        raise UserError(f"{file.path}: no public download is known; place it by hand: {file.by_hand}")
    url = mirrored(file.url)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = partial_path(target)
    download(url, partial, file.path)
    content = _checked_content(file, partial, url)
    if content is None:
        os.replace(partial, target)
    else:
        derived = target.with_name(target.name + ".derived")
        derived.write_bytes(content)
        os.replace(derived, target)
        partial.unlink()
    return "fetched"


def source_note(data_set: DataSet) -> str:
    """SOURCE.md for a fetched set's folder."""
    lines = [f"# {data_set.name}", data_set.description + ".", ""]
    lines += [f"Source: {data_set.source}", f"Licence: {data_set.licence}", f"Date: {data_set.date}", ""]
    for file in data_set.files:
        lines.append(f"- `{Path(file.path).relative_to(data_set.name)}` from {file.url or 'by hand'}")
        if file.derive is not None:
            lines.append(f"  (derived: {file.derive.__name__})")
        lines.append(f"  sha256 {file.sha256}")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Fetched:
    data_set: DataSet
    outcomes: dict[str, str]  # file path -> present | fetched


def fetch_set(home: Path, data_set: DataSet) -> Fetched:
    outcomes = {file.path: fetch_file(home, file) for file in data_set.files}
    note = home / data_set.name / "SOURCE.md"
    if not note.exists():
        write_atomic(note, source_note(data_set))
    return Fetched(data_set, outcomes)


@dataclass(frozen=True)
class SetState:
    data_set: DataSet
    states: dict[str, str]  # file path -> present | missing | damaged
    size: int  # bytes of the files that are there

    @property
    def summary(self) -> str:
        count = len(self.states)
        damaged = [path for path, state in self.states.items() if state == "damaged"]
        missing = [path for path, state in self.states.items() if state == "missing"]
        if damaged:
            return f"damaged ({', '.join(Path(path).name for path in damaged)})"
        if missing:
            return "missing" if len(missing) == count else f"missing {len(missing)} of {count} files"
        return "present"


def set_state(home: Path, data_set: DataSet) -> SetState:
    states = {file.path: file_state(home, file) for file in data_set.files}
    size = sum((home / path).stat().st_size for path, state in states.items() if state != "missing")
    return SetState(data_set, states, size)
