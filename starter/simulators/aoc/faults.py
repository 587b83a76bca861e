"""Fault injection, set through the simulator-only admin endpoint `POST /sim/faults`: each
fault applies to the next `count` matching requests or tasks (op `*` = any), then is used
up. Kinds: `task-fail` (the task ends FAILED with `error_code`/`message`), `task-stuck`
(the task stays EXECUTING until `POST /sim/faults/clear`), `locked` (the request answers
400 ResourceLocked), `error-500`, `slow` (the answer waits `delay_s`)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

KINDS = ("task-fail", "task-stuck", "locked", "error-500", "slow")


@dataclass
class Fault:
    kind: str
    op: str = "*"
    count: int = 1
    delay_s: float = 0.0
    error_code: str = "InjectedFailure"
    message: str = "fault injected by the AOC simulator"


@dataclass
class Faults:
    items: list[Fault] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    cleared: threading.Event = field(default_factory=threading.Event)

    def add(self, spec: dict[str, Any]) -> Fault:
        f = Fault(**spec)
        if f.kind not in KINDS:
            raise ValueError(f"unknown fault kind {f.kind!r}; kinds: {', '.join(KINDS)}")
        with self.lock:
            self.items.append(f)
            self.cleared.clear()
        return f

    def take(self, kind: str, op: str) -> Fault | None:
        with self.lock:
            for f in self.items:
                if f.kind == kind and f.op in ("*", op) and f.count > 0:
                    f.count -= 1
                    if f.count == 0:
                        self.items.remove(f)
                    return f
        return None

    def clear(self) -> None:
        with self.lock:
            self.items.clear()
        self.cleared.set()  # stuck tasks go on
