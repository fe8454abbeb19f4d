"""The few collectives an SFVQ fit needs, on ``torch.distributed`` (no-ops when there is no process group).

:meth:`Comm.of` picks the group: an explicit ``process_group``, else the default group when
``torch.distributed.is_initialized()``, else none (one process).  Collectives run on the CPU with gloo and
on ``cuda`` with nccl; tensors are moved there and back as needed.
"""
from __future__ import annotations

from typing import List, Optional

import torch
import torch.distributed as dist

Tensor = torch.Tensor


class Comm:
    """rank, world_size and sum/max all-reduce, broadcast and all-gather over one process group (or none)."""

    def __init__(self, group=None):
        self.group = group
        if group is None:
            self.rank, self.world_size, self.device = 0, 1, torch.device("cpu")
            return
        self.rank = dist.get_rank(group)
        self.world_size = dist.get_world_size(group)
        backend = str(dist.get_backend(group)).lower()
        self.device = torch.device("cuda", torch.cuda.current_device()) if "nccl" in backend else torch.device("cpu")

    @classmethod
    def of(cls, process_group=None) -> "Comm":
        if process_group is not None:
            return cls(process_group)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return cls(torch.distributed.group.WORLD)
        return cls(None)

    @property
    def active(self) -> bool:
        return self.group is not None

    def _run(self, t: Tensor, fn) -> Tensor:
        if self.group is None:
            return t
        moved = t.to(self.device)
        fn(moved)
        if moved is not t:
            t.copy_(moved)
        return t

    def sum_(self, t: Tensor) -> Tensor:
        """In-place sum over ranks."""
        return self._run(t, lambda x: dist.all_reduce(x, op=dist.ReduceOp.SUM, group=self.group))

    def max_(self, t: Tensor) -> Tensor:
        """In-place maximum over ranks."""
        return self._run(t, lambda x: dist.all_reduce(x, op=dist.ReduceOp.MAX, group=self.group))

    def broadcast_(self, t: Tensor, src: int = 0) -> Tensor:
        """In-place: every rank gets rank ``src``'s ``t`` (``src`` is a rank of this group)."""
        if self.group is None:
            return t
        global_src = dist.get_global_rank(self.group, src) if self.group is not dist.group.WORLD else src
        return self._run(t, lambda x: dist.broadcast(x, src=global_src, group=self.group))

    def gather_rows(self, t: Tensor, sizes: List[int]) -> Tensor:
        """Concatenate every rank's ``t`` (rank r's has ``sizes[r]`` rows) in rank order, on every rank."""
        if self.group is None:
            return t
        pad = max(sizes)
        buf = torch.zeros((pad,) + tuple(t.shape[1:]), dtype=t.dtype, device=self.device)
        buf[: t.shape[0]] = t.to(self.device)
        out = [torch.empty_like(buf) for _ in range(self.world_size)]
        dist.all_gather(out, buf, group=self.group)
        return torch.cat([o[:s] for o, s in zip(out, sizes)]).to(t.device)

    def agree(self, error: Optional[str], name: str) -> None:
        """Raise on every rank when any rank has an ``error``: its own message there, the first failing rank's
        message (prefixed with that rank) elsewhere, so whichever process a launcher reports first carries the
        real error.  Keeps a bad shard on one rank from leaving the others waiting in the next collective.
        """
        if self.group is None:
            if error is not None:
                raise ValueError(error)
            return
        errors = [None] * self.world_size
        dist.all_gather_object(errors, error, group=self.group)
        if error is not None:
            raise ValueError(error)
        bad = [(r, e) for r, e in enumerate(errors) if e is not None]
        if bad:
            r, e = bad[0]
            raise ValueError(f"{name}: rank {r} of {self.world_size} refused its part: {e}")


def split(n: int, parts: int, index: int) -> slice:
    """The ``index``-th of ``parts`` contiguous, near-equal pieces of range(n): [index n // parts, ...)."""
    return slice(index * n // parts, (index + 1) * n // parts)
