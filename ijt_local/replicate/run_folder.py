"""A replication's run folder (OUT): whose run it is, which stages finished, and its archive.

OUT belongs to one --base, --budget and data (the files' content, wherever --data-root puts them), recorded
in OUT/replication.json. A finished stage is recorded in OUT/stages/NAME.json with the arguments it ran
with, and is not redone for the same ones; an interrupted stage keeps its time so far in
OUT/stages/NAME.partial.json.
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
import time
from pathlib import Path

from ..errors import UserError
from ..jsonl import write_atomic
from ..models import file_sha256

CLOCK_TICK = 30.0  # seconds between saves of a running stage's time


def differences(recorded: dict, now: dict) -> dict[str, tuple]:
    """key -> (recorded value, value now) for every key of `now` whose value changed."""
    return {key: (recorded.get(key, "unrecorded"), value) for key, value in now.items() if recorded.get(key) != value}


def data_fingerprint(data_root: Path, folders: set[str]) -> str:
    """sha256 over the data files of `folders` under `data_root` (SOURCE.md and subfolders left out)."""
    digest = hashlib.sha256()
    for folder in sorted(folders):
        files = sorted(data_root.joinpath(folder).glob("*"))
        for path in (f for f in files if f.is_file() and f.suffix != ".md"):
            digest.update(f"{folder}/{path.name} {file_sha256(path)}\n".encode())
    return digest.hexdigest()


class StageClock:
    """Seconds spent on one stage over every invocation that worked on it.

    The running total is saved to `path` every CLOCK_TICK seconds and when the stage is interrupted,
    so a resumed stage reports its whole cost; the file is removed once the stage finishes. A finished
    stage rerun for new arguments starts from its `finished_before` seconds.
    """

    def __init__(self, path: Path, finished_before: float = 0.0):
        self.path = path
        # a partial total already counts `finished_before`: it was saved by a rerun of the finished stage
        self.earlier = json.loads(path.read_text())["seconds"] if path.exists() else finished_before

    def seconds(self) -> float:
        return round(self.earlier + time.perf_counter() - self.began, 1)

    def save(self) -> None:
        write_atomic(self.path, json.dumps({"seconds": self.seconds()}))

    def _tick(self) -> None:
        while not self.stopped.wait(CLOCK_TICK):
            self.save()

    def __enter__(self) -> StageClock:
        self.began = time.perf_counter()
        self.stopped = threading.Event()
        self.ticker = threading.Thread(target=self._tick, daemon=True)
        self.ticker.start()
        return self

    def __exit__(self, error_type, *_) -> None:
        self.stopped.set()
        self.ticker.join()
        if error_type is None:
            self.path.unlink(missing_ok=True)
        else:
            self.save()


class RunFolder:
    def __init__(self, out: Path, identity: dict, data_root: Path):
        """Claim `out` for the run `identity` names (base, budget, data, training settings), or refuse it
        when it holds another run: its data, adapters and caches would be stale."""
        self.out = Path(out).resolve()
        self.stages = self.out / "stages"
        self.claim(json.loads(json.dumps(identity)), str(data_root))  # as JSON holds it: tuples are lists
        self.started = time.perf_counter()

    def claim(self, identity: dict, data_root: str) -> None:
        path = self.out / "replication.json"
        if path.exists():
            recorded = json.loads(path.read_text())
            # made before these were recorded (the data folder was known by its path then): from now on they are
            missing = {"training": identity["training"]}
            if recorded.get("data_root") == data_root:
                missing["data"] = identity["data"]
            missing = {key: value for key, value in missing.items() if key not in recorded}
            if missing:
                recorded.update(missing)
                write_atomic(path, json.dumps(recorded, indent=1))
            changed = differences(recorded, identity)
            if "budget" in changed:
                changed.pop("training", None)  # another budget trains otherwise anyway
            if changed:
                made_with = ", ".join(self.made_with(key, old, recorded) for key, (old, _) in changed.items())
                raise UserError(
                    f"{self.out} holds a run made with {made_with}; pass the same to resume it, or use another --out"
                )
        else:
            self.out.mkdir(parents=True, exist_ok=True)
            write_atomic(path, json.dumps({**identity, "data_root": data_root}, indent=1))
        self.stages.mkdir(exist_ok=True)

    @staticmethod
    def made_with(key: str, old, recorded: dict) -> str:
        if key == "training":
            return f"other training settings of budget {recorded['budget']} ({old})"
        if key == "data" and old == "unrecorded":  # made when the data was known only by its folder
            return f"--data-root {recorded.get('data_root')} (resume it from there once to record its files)"
        if key == "data":
            return f"other data files (those of --data-root {recorded.get('data_root', 'unrecorded')})"
        return f"--{key.replace('_', '-')} {old}"

    def stage(self, name: str, inputs: dict, work) -> dict:
        """Run `work` (-> a dict) as stage `name` unless it finished earlier with the same `inputs`: the
        arguments it depends on beyond the run's identity. Returns the stage's record."""
        marker = self.stages / f"{name}.json"
        finished_before = 0.0
        if marker.exists():
            earlier = json.loads(marker.read_text())
            changed = differences(earlier.get("inputs", {}), inputs)  # markers of older versions hold no inputs
            if not changed:
                self.say(f"{name}: done earlier, skipped")
                return earlier
            listed = ", ".join(f"{key} {old} -> {new}" for key, (old, new) in changed.items())
            self.say(f"{name}: done earlier with other arguments ({listed}); doing what is missing")
            finished_before = earlier["seconds"]
        with StageClock(self.stages / f"{name}.partial.json", finished_before) as clock:
            self.say(
                f"{name}: resumed, {clock.earlier / 60:.1f} min spent on it earlier"
                if clock.earlier
                else f"{name}: started"
            )
            result = {"seconds": 0.0, "inputs": inputs, **work()}
            result["seconds"] = clock.seconds()
            write_atomic(marker, json.dumps(result, indent=1))
        self.say(f"{name}: finished in {result['seconds']:.0f} s")
        return result

    def stage_seconds(self) -> float:
        """Time of the finished stages, summed (across resumed invocations)."""
        return sum(
            json.loads(m.read_text()).get("seconds", 0)
            for m in self.stages.glob("*.json")
            if not m.name.endswith(".partial.json")
        )

    def say(self, text: str) -> None:
        elapsed = time.perf_counter() - self.started
        print(f"[{elapsed / 60:6.1f} min] {text}", file=sys.stderr, flush=True)

    def archive(self, path: Path, leave_out: set[Path]) -> int:
        """Pack what the report is built from (stage records, replies, scores, judgements, adapters' run
        records and loss curves, the evaluation prompt sets) into a .tar.xz, leaving out what is large and
        remade from the shared data: adapter weights and checkpoints, GGUFs, and the files `leave_out`
        (the training sets). Extracted into an OUT and rerun with the same arguments, every stage is
        skipped and the report is written again. Returns the number of files packed."""
        import tarfile
        import tempfile

        kept = []
        for file in sorted(self.out.rglob("*")):
            relative = file.relative_to(self.out)
            top = relative.parts[0]
            if not file.is_file() or top in ("gguf", "measure-train") or file in leave_out:
                continue
            if top == "adapters" and (
                relative.name not in ("run.json", "adapter_config.json", "loss_curve.csv")
                or "checkpoints" in relative.parts
            ):
                continue
            kept.append(relative)
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=path.name, suffix=".partial", delete=False) as tmp:
            try:
                with tarfile.open(fileobj=tmp, mode="w:xz") as tar:
                    for relative in kept:
                        tar.add(self.out / relative, arcname=str(Path(self.out.name) / relative))
            except BaseException:
                Path(tmp.name).unlink()
                raise
        Path(tmp.name).replace(path)
        return len(kept)
