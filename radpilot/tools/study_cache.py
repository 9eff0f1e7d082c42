"""Per-study results kept in memory, least recently used first out.

Several questions about one image reuse what a model computed for it once (localizing after
classifying, measuring after segmenting). Keys start with a study id, which belongs to one
session and is never reused, so one session never sees another's results.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

Value = TypeVar("Value")


class StudyCache(Generic[Value]):
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, Value] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Value | None:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            return None

    def put(self, key: str, value: Value) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def get_or_compute(self, key: str, compute: Callable[[], Value]) -> Value:
        """The cached value, or `compute()` stored (computed outside the lock: two threads
        that miss together both compute, and the results are the same)."""
        cached = self.get(key)
        if cached is None:
            cached = compute()
            self.put(key, cached)
        return cached
