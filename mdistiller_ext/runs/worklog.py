"""The host's worklog.txt format (users and scripts parse it; stay byte-compatible)."""
import os
from typing import Dict, List, Optional, Tuple


def epoch_block(epoch: int, lr: float, values: Dict[str, float]) -> str:
    lines = ["-" * 25, f"epoch: {epoch}", f"lr: {float(lr):.2f}"]
    lines += [f"{k}: {float(v):.2f}" for k, v in values.items()]
    lines.append("-" * 25)
    return "".join(line + os.linesep for line in lines)


def append(path: str, text: str) -> None:
    with open(path, "a") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def best_line(best_acc: float) -> str:
    return "best_acc\t" + f"{float(best_acc):.2f}"


class Worklog:
    """A parsed worklog: per-epoch values (a repeated epoch keeps its last block) and best_acc."""

    def __init__(self, epochs: Dict[int, Dict[str, float]], best_acc, blocks: List[Tuple[int, str]]) -> None:
        self.epochs = epochs
        self.best_acc = best_acc
        self.blocks = blocks

    @property
    def finished(self) -> bool:
        return self.best_acc is not None

    @property
    def last_epoch(self) -> int:
        return max(self.epochs) if self.epochs else 0

    @property
    def best_val_epoch(self) -> Optional[int]:
        """The epoch with the highest validation top-1 (EXT.VAL_SPLIT; the last one reaching it), or None."""
        scored = [e for e in self.epochs if "val_acc" in self.epochs[e]]
        return max(scored, key=lambda e: (self.epochs[e]["val_acc"], e)) if scored else None

    @property
    def best_epoch(self) -> int:
        """The epoch whose model the host saves as "best" (test_acc >= best so far): the last one reaching the maximum."""
        return max(self.epochs, key=lambda e: (self.epochs[e].get("test_acc", -1), e)) if self.epochs else 0


def parse(text: str) -> Worklog:
    epochs: Dict[int, Dict[str, float]] = {}
    blocks: List[Tuple[int, str]] = []
    best = None
    current: Dict[str, float] = {}
    raw: List[str] = []
    epoch = None
    notes: List[str] = []  # '# ...' lines (the run's provenance) belong to the block after them
    for line in text.splitlines(keepends=True):
        s = line.strip()
        if s.startswith("#"):
            notes.append(line)
            continue
        if s.startswith("best_acc"):
            parts = s.split()
            best = float(parts[1]) if len(parts) > 1 else None
            continue
        if s and set(s) == {"-"}:
            if epoch is not None:
                raw.append(line)
                epochs[epoch] = current
                blocks.append((epoch, "".join(raw)))
                epoch, current, raw = None, {}, []
            else:
                raw, notes = notes + [line], []
            continue
        if ":" not in s:
            continue
        key, _, value = s.partition(":")
        raw.append(line)
        if key == "epoch":
            epoch = int(value)
            continue
        try:
            current[key.strip()] = float(value)
        except ValueError:
            pass
    return Worklog(epochs, best, blocks)


def read(path: str) -> Worklog:
    with open(path) as f:
        return parse(f.read())


def keep_epochs(text: str, last_epoch: int) -> str:
    """The worklog as it was when epoch ``last_epoch`` ended (later blocks, their notes and best_acc removed)."""
    return "".join(raw for e, raw in parse(text).blocks if e <= last_epoch)
