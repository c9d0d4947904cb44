"""Published reference numbers (mdistiller_ext/reference_results.yaml), each with its source."""
import os
from typing import Dict, NamedTuple, Optional

import yaml

DEFAULT_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference_results.yaml")


class Reference(NamedTuple):
    top1: float
    top5: Optional[float]
    source: str


class ReferenceTable:
    def __init__(self, data: Dict) -> None:
        self.sources: Dict[str, str] = data.get("sources", {})
        self.notes: Dict[str, str] = data.get("notes", {})
        self._data = data

    def lookup(self, dataset: str, pair: str, method: str) -> Optional[Reference]:
        entry = (self._data.get(dataset) or {}).get(pair, {}).get(method.lower())
        if not entry:
            return None
        key = entry["source"]
        if key not in self.sources:
            raise ValueError(f"reference {dataset}/{pair}/{method} cites unknown source {key!r}")
        return Reference(float(entry["top1"]), float(entry["top5"]) if "top5" in entry else None, key)


def load(path: str = DEFAULT_PATH) -> ReferenceTable:
    with open(path) as f:
        return ReferenceTable(yaml.safe_load(f))
