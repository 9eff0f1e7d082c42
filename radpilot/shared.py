"""`@process_wide`: one instance per arguments per process, built once even under threads.

`functools.cache` alone lets two threads that ask at the same moment both build (two model
loads, or two concurrent builds of one on-disk index). The API serves requests on worker
threads and `radpilot eval --jobs N` runs scenarios on threads, so heavy shared objects are
built under a lock.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any, TypeVar, cast

F = TypeVar("F", bound=Callable[..., Any])


def process_wide(build: F) -> F:
    cached = functools.cache(build)
    lock = threading.Lock()

    @functools.wraps(build)
    def get(*args: Any, **kwargs: Any) -> Any:
        with lock:
            return cached(*args, **kwargs)

    return cast(F, get)
