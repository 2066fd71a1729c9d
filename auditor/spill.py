"""A sequence kept on disk: the explainers' results and the decisions of an audit, off the heap.

An audit of 10,000 decisions per model holds about 12 KB of Python objects per decision (an explanation's
weights, conditions and counterfactuals, the decision record, its principal reasons and agreement), and the
allocator keeps the pages of objects that lived long beside short-lived ones. :class:`Spilled` writes each item
as it arrives (pickled) to an anonymous temporary file and reads it back when asked, so the main process holds
only their offsets: its memory stays about the same from 1,000 to 10,000 decisions.

It reads like a list (``len``, ``[i]``, slices, iteration, ``==``, ``seq[i] = item`` to replace one), and an item read
back is a copy: change it, then assign it back. The last few items read are kept (the report reads a decision's
fields one after another). Reads and writes go by offset (``os.pread``/``os.pwrite``), so no shared file
position is moved. The file has no name and goes when the sequence does. Pickling a :class:`Spilled` (a value
sent to another process) sends its items as a list (when pickle can name them).

Decisions are models of the evidence types derived from the registry at run time
(:func:`auditor.evidence.evidence_types`), which pickle cannot name: ``kind`` stores such an item as its pydantic
state and rebuilds it as that class, the same object field for field.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import weakref
from array import array
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

__all__ = ["Spilled", "as_spilled"]

KEPT = 8
"""Items read back that are kept, most recent first."""


class Spilled(Sequence):
    """Items pickled one by one to a temporary file; ``kind``: the class of every item, when pickle cannot name it
    (an item is then stored as its pydantic state and rebuilt as ``kind``)."""

    def __init__(self, items: Iterable[Any] = (), *, kind: type | None = None) -> None:
        self._file = tempfile.TemporaryFile(prefix="auditor-spill-")
        self._fd = self._file.fileno()
        weakref.finalize(self, self._file.close)
        self._starts = array("q")
        self._sizes = array("q")
        self._end = 0
        self._kind = kind
        self._kept: dict[int, Any] = {}
        self.extend(items)

    def append(self, item: Any) -> None:
        self._starts.append(self._write(item))
        self._sizes.append(self._end - self._starts[-1])

    def extend(self, items: Iterable[Any]) -> None:
        for item in items:
            self.append(item)

    def __setitem__(self, index: int, item: Any) -> None:
        index = self._index(index)
        self._starts[index] = self._write(item)
        self._sizes[index] = self._end - self._starts[index]
        self._kept.pop(index, None)

    def __len__(self) -> int:
        return len(self._starts)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        index = self._index(index)
        if index in self._kept:
            return self._kept[index]
        item = self._read(index)
        self._kept[index] = item
        if len(self._kept) > KEPT:
            del self._kept[next(iter(self._kept))]
        return item

    def __iter__(self) -> Iterator[Any]:
        for index in range(len(self)):
            yield self._kept[index] if index in self._kept else self._read(index)

    def __eq__(self, other: object) -> bool:
        """Equal to a list (or another Spilled) of equal items, as a list is."""
        if not isinstance(other, (list, Spilled)):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other))

    __hash__ = None  # type: ignore[assignment]  # like a list

    def __reduce__(self):
        return list, (list(self),)

    def __repr__(self) -> str:
        return f"<Spilled: {len(self)} items, {self._end:,} bytes on disk>"

    def close(self) -> None:
        self._file.close()

    def _index(self, index: int) -> int:
        n = len(self)
        if not -n <= index < n:
            raise IndexError("Spilled index out of range")
        return index % n

    def _write(self, item: Any) -> int:
        state = item.__getstate__() if self._kind is not None else item
        data = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
        start, view = self._end, memoryview(data)
        while view:
            written = os.pwrite(self._fd, view, self._end)
            view = view[written:]
            self._end += written
        return start

    def _read(self, index: int) -> Any:
        start, size = self._starts[index], self._sizes[index]
        data = os.pread(self._fd, size, start)
        while len(data) < size:  # a short read: a regular file gives one only at its end, but be exact
            data += os.pread(self._fd, size - len(data), start + len(data))
        state = pickle.loads(data)
        if self._kind is None:
            return state
        item = self._kind.__new__(self._kind)
        item.__setstate__(state)
        return item


def as_spilled(items: Sequence[Any], *, kind: type | None = None) -> Spilled:
    """``items`` as a :class:`Spilled` (itself when it is one)."""
    return items if isinstance(items, Spilled) else Spilled(items, kind=kind)
