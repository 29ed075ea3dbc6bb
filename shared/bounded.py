"""Bounded containers for long-lived processes: what a service remembers must not grow forever.

Both keep insertion (or last-touch) order and drop the oldest once ``maxsize`` is passed, so
inside the bound they behave like the ``set`` / ``dict`` they replace.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator, MutableMapping
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class LruDict(MutableMapping[K, V], Generic[K, V]):
    """A dict that forgets its least recently written key once it holds more than ``maxsize``."""

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError(f"an LruDict needs maxsize >= 1, got {maxsize}")
        self.maxsize = maxsize
        self._data: OrderedDict[K, V] = OrderedDict()
        self.evicted = 0

    def __getitem__(self, key: K) -> V:
        return self._data[key]

    def __setitem__(self, key: K, value: V) -> None:
        data = self._data
        data[key] = value
        data.move_to_end(key)
        if len(data) > self.maxsize:
            data.popitem(last=False)
            self.evicted += 1

    def __delitem__(self, key: K) -> None:
        del self._data[key]

    def __iter__(self) -> Iterator[K]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __repr__(self) -> str:
        return f"LruDict(maxsize={self.maxsize}, len={len(self._data)})"


class LruSet(Generic[K]):
    """A set that forgets its oldest member once it holds more than ``maxsize`` (adding again refreshes)."""

    def __init__(self, maxsize: int, items: Iterable[K] = ()) -> None:
        self._data: LruDict[K, None] = LruDict(maxsize)
        self.update(items)

    @property
    def maxsize(self) -> int:
        return self._data.maxsize

    @property
    def evicted(self) -> int:
        return self._data.evicted

    def add(self, item: K) -> None:
        self._data[item] = None

    def update(self, items: Iterable[K]) -> None:
        for item in items:
            self._data[item] = None

    def discard(self, item: K) -> None:
        self._data.pop(item, None)

    def __contains__(self, item: object) -> bool:
        return item in self._data

    def __iter__(self) -> Iterator[K]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"LruSet(maxsize={self.maxsize}, len={len(self)})"
