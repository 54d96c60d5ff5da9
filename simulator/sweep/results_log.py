"""``results.jsonl``: the sweep's append-only log, one finished row per line, each written whole and
fsynced, so an interrupted sweep loses nothing it finished and resumes from it."""
from __future__ import annotations

import json
import os
from pathlib import Path

RESULTS_FILE = "results.jsonl"


class ResultsLog:
    """Append-only JSONL of finished rows: each line written whole, flushed and fsynced."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def read(self, repair: bool = False) -> list[dict]:
        """Rows already on disk; a torn last line (a crash mid-write) is ignored, and cut off if ``repair``."""
        if not self.path.exists():
            return []
        data = self.path.read_bytes()
        rows, good_end = [], 0
        pos = 0
        while pos < len(data):
            nl = data.find(b"\n", pos)
            if nl < 0:
                break                                  # no newline: a torn last line
            line = data[pos:nl]
            try:
                row = json.loads(line)
                if not isinstance(row, dict) or "key" not in row:
                    raise ValueError("not a row")
            except ValueError:
                if nl + 1 < len(data):
                    lineno = data.count(b"\n", 0, pos) + 1
                    raise ValueError(f"{self.path}: line {lineno} is not a result row ({line[:60]!r}...)") from None
                break
            rows.append(row)
            pos = good_end = nl + 1
        if repair and good_end < len(data):
            with open(self.path, "r+b") as f:
                f.truncate(good_end)
                f.flush()
                os.fsync(f.fileno())
        return rows

    def append(self, row: dict) -> None:
        line = (json.dumps(row, sort_keys=True, allow_nan=False) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            view = memoryview(line)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
