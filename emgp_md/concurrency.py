"""Detecting concurrent use of objects that are not thread-safe (one calculator per thread)."""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def one_thread_at_a_time(method: F) -> F:
    """Make ``method`` refuse, with a ``RuntimeError``, to run on an instance that is already running it.

    A second thread that calls the method while another thread is inside it for the same instance
    fails at once (a non-blocking per-instance lock) instead of corrupting the instance's state; the
    message says to use one instance per thread. Different instances never block each other.
    """
    locks: weakref.WeakKeyDictionary[Any, threading.Lock] = weakref.WeakKeyDictionary()
    guard = threading.Lock()  # makes the creation of an instance's lock race-free

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        with guard:
            lock = locks.setdefault(self, threading.Lock())
        if not lock.acquire(blocking=False):
            name = type(self).__name__
            raise RuntimeError(
                f"this {name} is already computing in another thread; one {name} instance is not thread-safe: "
                f"create one {name} per thread (or serialise the calls yourself)"
            )
        try:
            return method(self, *args, **kwargs)
        finally:
            lock.release()

    return wrapper  # type: ignore[return-value]
