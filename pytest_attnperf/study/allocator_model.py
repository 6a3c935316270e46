"""A small model of PyTorch's CUDA caching allocator: best-fit reuse with block splitting (no torch import).

Two accountings come out of one timeline: the bytes of live tensors (what
``torch.cuda.max_memory_allocated`` measures) and the bytes the caching allocator has to reserve
for them. They differ when a freed score-sized block is split to hold a small tensor and so
cannot take the next score-sized one: that is why standard attention stops fitting earlier than
a live-tensor count says.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .timelines import Timeline

# PyTorch's CUDACachingAllocator constants (c10/cuda/CUDACachingAllocator.cpp).
_MIN_BLOCK = 512
_SMALL_SIZE = 1 << 20
_SMALL_BUFFER = 2 << 20
_LARGE_BUFFER = 20 << 20
_MIN_LARGE_ALLOC = 10 << 20
_ROUND_LARGE = 2 << 20


def _round_block(nbytes: int) -> int:
    return max(_MIN_BLOCK, _MIN_BLOCK * math.ceil(nbytes / _MIN_BLOCK))


def _segment_size(block: int) -> int:
    if block <= _SMALL_SIZE:
        return _SMALL_BUFFER
    if block < _MIN_LARGE_ALLOC:
        return _LARGE_BUFFER
    return _ROUND_LARGE * math.ceil(block / _ROUND_LARGE)


@dataclass
class _Block:
    offset: int
    size: int
    owner: int  # allocation key; 0 when the block is free


@dataclass
class _Segment:
    order: int
    size: int
    small: bool
    creator: str
    blocks: list[_Block]


@dataclass(frozen=True)
class SegmentView:
    """One cudaMalloc'd segment at the reserved peak: its size, who caused it, who lives in it now."""

    size: int
    created_for: str
    live: tuple[str, ...]
    live_bytes: int


class CachingAllocatorModel:
    """Best-fit reuse of cached blocks with splitting, new segments on a miss, release only when needed."""

    def __init__(self, capacity: int | None) -> None:
        self.capacity = capacity
        self.segments: list[_Segment] = []
        self.home: dict[int, _Segment] = {}
        self.labels: dict[int, str] = {}
        self.reserved = 0
        self.peak_reserved = 0
        self.peak_segments: tuple[SegmentView, ...] = ()
        self._order = 0

    def malloc(self, key: int, label: str, nbytes: int) -> bool:
        """Allocate; False when a new segment would exceed the capacity even after releasing cached ones."""
        size = _round_block(nbytes)
        small = size <= _SMALL_SIZE
        found = self._best_fit(size, small)
        if found is None:
            segment_size = _segment_size(size)
            if self.capacity is not None and self.reserved + segment_size > self.capacity:
                # On a failed cudaMalloc PyTorch frees every cached segment that is entirely unused.
                self._release_unused()
                if self.reserved + segment_size > self.capacity:
                    return False
            self._order += 1
            segment = _Segment(self._order, segment_size, small, label, [_Block(0, segment_size, 0)])
            self.segments.append(segment)
            self.reserved += segment_size
            found = (segment, 0)
        segment, index = found
        block = segment.blocks[index]
        remaining = block.size - size
        # Large blocks are split only when more than 1 MiB would be left over.
        if (remaining >= _MIN_BLOCK) if small else (remaining > _SMALL_SIZE):
            segment.blocks[index : index + 1] = [
                _Block(block.offset, size, key),
                _Block(block.offset + size, remaining, 0),
            ]
        else:
            block.owner = key
        self.home[key] = segment
        self.labels[key] = label
        if self.reserved > self.peak_reserved:
            self.peak_reserved = self.reserved
            self.peak_segments = self._view()
        return True

    def free(self, key: int) -> None:
        """Return a block to the cache, merging it with free neighbours in its segment."""
        segment = self.home.pop(key)
        blocks = segment.blocks
        index = next(i for i, block in enumerate(blocks) if block.owner == key)
        blocks[index].owner = 0
        if index + 1 < len(blocks) and not blocks[index + 1].owner:
            blocks[index].size += blocks.pop(index + 1).size
        if index > 0 and not blocks[index - 1].owner:
            blocks[index - 1].size += blocks.pop(index).size

    def _best_fit(self, size: int, small: bool) -> tuple[_Segment, int] | None:
        best: tuple[int, int, int] | None = None
        found: tuple[_Segment, int] | None = None
        for segment in self.segments:
            if segment.small != small:
                continue
            for index, block in enumerate(segment.blocks):
                if not block.owner and block.size >= size:
                    rank = (block.size, segment.order, block.offset)
                    if best is None or rank < best:
                        best, found = rank, (segment, index)
        return found

    def _release_unused(self) -> None:
        unused = [s for s in self.segments if len(s.blocks) == 1 and not s.blocks[0].owner]
        for segment in unused:
            self.segments.remove(segment)
            self.reserved -= segment.size

    def _view(self) -> tuple[SegmentView, ...]:
        return tuple(
            SegmentView(
                size=s.size,
                created_for=s.creator,
                live=tuple(self.labels[b.owner] for b in s.blocks if b.owner),
                live_bytes=sum(b.size for b in s.blocks if b.owner),
            )
            for s in self.segments
        )


@dataclass(frozen=True)
class Simulation:
    fits: bool
    reserved_rise: int
    segments: tuple[SegmentView, ...]


def simulate(timeline: Timeline, inputs: Sequence[tuple[str, int]], capacity: int | None) -> Simulation:
    """Replay a timeline through the caching-allocator model, the inputs already allocated."""
    model = CachingAllocatorModel(capacity)
    for key, (label, nbytes) in enumerate(inputs, start=-len(inputs)):
        if nbytes and not model.malloc(key, label, nbytes):
            return Simulation(False, 0, ())
    baseline = model.reserved
    model.peak_reserved = baseline
    model.peak_segments = model._view()
    for event in timeline.events:
        if event.nbytes:
            if not model.malloc(event.key, event.label, event.nbytes):
                return Simulation(False, model.peak_reserved - baseline, model.peak_segments)
        else:
            model.free(event.key)
    return Simulation(True, model.peak_reserved - baseline, model.peak_segments)
