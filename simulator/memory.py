"""RAM as a heap that places real offsets (docs/architecture.md §3), so fragmentation fails like on the board.

Every allocation is rounded up to the runtime's block size after adding its per-object overhead
(MicroPython's GC: 16-byte blocks on 32-bit ports). Free space is a sorted list of holes that
coalesce on free; first-fit takes the lowest-address hole that fits, best-fit the smallest.
An allocation that cannot be placed raises :class:`OutOfMemory`, or :class:`Fragmentation` when the
total free space would have sufficed but no single hole is large enough.
"""
from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable
from numbers import Integral
from typing import Any

POLICIES = ("first-fit", "best-fit")


def _is_int(v: object) -> bool:
    return isinstance(v, Integral) and not isinstance(v, bool)


class OutOfMemory(MemoryError):
    """An allocation did not fit: not enough free bytes in total. Carries the numbers."""

    kind = "out_of_memory"

    def __init__(self, total_free: int, largest_free: int, need: int, op_name: str = "",
                 tensor_id: int | None = None, tensor_kind: str = "", capacity: int = 0) -> None:
        self.total_free = total_free
        self.largest_free = largest_free
        self.need = need
        self.op_name = op_name
        self.tensor_id = tensor_id
        self.tensor_kind = tensor_kind
        self.capacity = capacity
        super().__init__(self._message())

    def _what(self) -> str:
        return "out of memory"

    def _message(self) -> str:
        where = f" at op {self.op_name!r}" if self.op_name else ""
        tensor = f" for {self.tensor_kind or 'tensor'} {self.tensor_id}" if self.tensor_id is not None else ""
        return (f"{self._what()}{where}: need {self.need:,} B{tensor}, free {self.total_free:,} B in total, "
                f"largest free block {self.largest_free:,} B (heap {self.capacity:,} B)")


class Fragmentation(OutOfMemory):
    """Enough bytes were free in total, but no contiguous hole was large enough."""

    kind = "fragmentation"

    def _what(self) -> str:
        return "heap fragmented"


class Heap:
    """A heap of ``capacity_bytes`` that places each tensor at a real offset.

    ``alloc`` returns the byte offset; ``free`` returns the block to the free list, merging it with
    its neighbours. Sizes and offsets are multiples of ``block_bytes``; ``used_bytes`` counts the
    rounded sizes (payload + overhead + rounding), which is what the board's allocator consumes.
    """

    def __init__(self, capacity_bytes: int, block_bytes: int = 1, overhead_bytes: int = 0,
                 policy: str = "first-fit") -> None:
        if not _is_int(capacity_bytes) or capacity_bytes <= 0:
            raise ValueError(f"heap capacity_bytes must be an integer > 0 (got {capacity_bytes!r})")
        if not _is_int(block_bytes) or block_bytes < 1:
            raise ValueError(f"heap block_bytes must be an integer >= 1 (got {block_bytes!r})")
        if not _is_int(overhead_bytes) or overhead_bytes < 0:
            raise ValueError(f"heap overhead_bytes must be an integer >= 0 (got {overhead_bytes!r})")
        capacity_bytes, block_bytes, overhead_bytes = int(capacity_bytes), int(block_bytes), int(overhead_bytes)
        if policy not in POLICIES:
            raise ValueError(f"heap policy must be one of {', '.join(POLICIES)} (got {policy!r})")
        if capacity_bytes < block_bytes:
            raise ValueError(f"heap capacity_bytes ({capacity_bytes}) must be >= block_bytes ({block_bytes})")
        self.block_bytes = block_bytes
        self.overhead_bytes = overhead_bytes
        self.policy = policy
        self.capacity_bytes = capacity_bytes - capacity_bytes % block_bytes   # usable: whole blocks only
        self._starts: list[int] = [0]                            # hole start offsets, sorted
        self._hole: dict[int, int] = {0: self.capacity_bytes}    # hole start -> size
        self._by_size: list[tuple[int, int]] = [(self.capacity_bytes, 0)]   # (size, start), sorted
        self._live: dict[int, tuple[int, int, str]] = {}         # tensor id -> (offset, size, kind)
        self._by_kind: dict[str, int] = {}
        self.used_bytes = 0
        self.peak_bytes = 0
        self.high_water_bytes = 0    # highest address ever used: the heap size this run needed

    @classmethod
    def for_runtime(cls, capacity_bytes: int, runtime: Any, policy: str = "first-fit") -> Heap:
        """A heap with the block size and per-object overhead of a profile's ``Runtime``."""
        return cls(capacity_bytes, block_bytes=runtime.heap_block_bytes,
                   overhead_bytes=runtime.alloc_overhead_bytes, policy=policy)

    # --- queries -------------------------------------------------------------------------------

    @property
    def free_bytes(self) -> int:
        """Total free bytes (not necessarily contiguous)."""
        return self.capacity_bytes - self.used_bytes

    def largest_free_block(self) -> int:
        """Size of the largest contiguous hole in bytes."""
        return self._by_size[-1][0] if self._by_size else 0

    def used_by_kind(self) -> dict[str, int]:
        """Bytes in use per tensor kind (rounded sizes), kinds with nothing live omitted."""
        return {k: v for k, v in self._by_kind.items() if v}

    def size_for(self, nbytes: int) -> int:
        """What an allocation of ``nbytes`` consumes: payload + overhead, rounded up to whole blocks."""
        b = self.block_bytes
        need = -(-(nbytes + self.overhead_bytes) // b) * b
        return max(need, b)   # even an empty object takes a block

    def __contains__(self, tensor_id: object) -> bool:
        return tensor_id in self._live

    def __len__(self) -> int:
        return len(self._live)

    def holes(self) -> list[tuple[int, int]]:
        """The free list as (offset, size) pairs in address order."""
        return [(s, self._hole[s]) for s in self._starts]

    # --- alloc / free --------------------------------------------------------------------------

    def alloc(self, tensor_id: int, nbytes: int, kind: str, op_name: str = "") -> int:
        """Place ``nbytes`` (+ overhead, rounded to blocks) and return its offset.

        Raises Fragmentation if the free total would suffice but no hole does, else OutOfMemory.
        """
        if not _is_int(nbytes) or nbytes < 0:
            raise ValueError(f"heap alloc of tensor {tensor_id} at op {op_name!r}: nbytes must be an "
                             f"integer >= 0 (got {nbytes!r})")
        nbytes = int(nbytes)
        if tensor_id in self._live:
            raise ValueError(f"heap alloc at op {op_name!r}: tensor {tensor_id} is already allocated")
        need = self.size_for(nbytes)
        if not self._by_size or self._by_size[-1][0] < need:
            total, largest = self.free_bytes, self.largest_free_block()
            exc = Fragmentation if need <= total else OutOfMemory
            raise exc(total, largest, need, op_name, tensor_id, kind, self.capacity_bytes)
        if self.policy == "best-fit":
            i = bisect_left(self._by_size, (need, -1))
            size, start = self._by_size[i]
        else:
            hole = self._hole
            for start in self._starts:   # lowest address first; a hole that fits exists (checked above)
                if hole[start] >= need:
                    size = hole[start]
                    break
        self._take(start, size, need)
        self._live[tensor_id] = (start, need, kind)
        self._by_kind[kind] = self._by_kind.get(kind, 0) + need
        self.used_bytes += need
        if self.used_bytes > self.peak_bytes:
            self.peak_bytes = self.used_bytes
        if start + need > self.high_water_bytes:
            self.high_water_bytes = start + need
        return start

    def free(self, tensor_id: int) -> None:
        """Release a tensor's block and merge it with adjacent holes."""
        try:
            start, size, kind = self._live.pop(tensor_id)
        except KeyError:
            raise ValueError(f"heap free: tensor {tensor_id} is not allocated") from None
        self._by_kind[kind] -= size
        self.used_bytes -= size
        end = start + size
        i = bisect_left(self._starts, start)
        # merge with the hole just after
        if i < len(self._starts) and self._starts[i] == end:
            nsize = self._hole.pop(end)
            self._remove_size(nsize, end)
            del self._starts[i]
            size += nsize
        # merge with the hole just before
        if i > 0:
            prev = self._starts[i - 1]
            psize = self._hole[prev]
            if prev + psize == start:
                self._remove_size(psize, prev)
                start, size = prev, psize + size
                self._hole[start] = size
                insort(self._by_size, (size, start))
                return
        self._starts.insert(i, start)
        self._hole[start] = size
        insort(self._by_size, (size, start))

    # --- internals -----------------------------------------------------------------------------

    def _remove_size(self, size: int, start: int) -> None:
        j = bisect_left(self._by_size, (size, start))
        del self._by_size[j]

    def _take(self, start: int, size: int, need: int) -> None:
        """Carve ``need`` bytes off the front of the hole at ``start``."""
        self._remove_size(size, start)
        del self._hole[start]
        i = bisect_left(self._starts, start)
        if size == need:
            del self._starts[i]
            return
        rest = start + need
        self._starts[i] = rest
        self._hole[rest] = size - need
        insort(self._by_size, (size - need, rest))


def place_trace(heap: Heap, ops: Iterable[Any], persistent: Iterable[Any] = ()) -> Heap:
    """Run a trace's allocations through ``heap``: persistent tensors first, then each op allocs its
    tensors and frees its ids. Returns the heap (see ``peak_bytes``, ``high_water_bytes``); raises
    OutOfMemory/Fragmentation naming the op where it ran out."""
    for t in persistent:
        heap.alloc(t.id, t.nbytes, t.kind, op_name="<persistent>")
    for op in ops:
        for t in op.alloc:
            heap.alloc(t.id, t.nbytes, t.kind, op_name=op.name)
        for tid in op.free:
            heap.free(tid)
    return heap
