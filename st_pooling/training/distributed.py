"""Several processes, one job: which process this is, and the few collectives st-pooling's loops need.

``torchrun`` and ``accelerate launch`` start one process per device and describe the job in the environment
(``WORLD_SIZE``, ``RANK``, ``MASTER_ADDR`` ...). :func:`current_ranks` joins that job's process group through
accelerate's ``PartialState`` (the engine transformers' Trainer uses, so the trainer path and the loops here share one
process group): NCCL on GPUs, gloo on CPU. Without a launcher it returns a single process and every collective here is
the identity, so single-process code paths run unchanged.

Everything exchanged between processes is tensors or bytes (JSON, safetensors); nothing is unpickled.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn

T = TypeVar("T")


def launched_world_size() -> int:
    """The number of processes the launcher (torchrun, accelerate launch) started, 1 without one."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ValueError(f"WORLD_SIZE must be a whole number, got {os.environ['WORLD_SIZE']!r}") from None


@dataclass(frozen=True)
class Ranks:
    """This process's place in the job: ``rank`` of ``world`` processes, and the device it computes on."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def share(self, n: int, rank: int | None = None) -> slice:
        """This rank's (or ``rank``'s) contiguous share of ``n`` items (the first ``n % world`` ranks take one more)."""
        rank = self.rank if rank is None else rank
        size, extra = divmod(n, self.world)
        start = rank * size + min(rank, extra)
        return slice(start, start + size + (rank < extra))

    def share_counts(self, n: int) -> list[int]:
        """How many of ``n`` items each rank's :meth:`share` holds."""
        return [len(range(n)[self.share(n, rank)]) for rank in range(self.world)]

    # ------------------------------------------------------------------------------------------- collectives

    def _comm_device(self) -> torch.device:
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def gather_rows(self, tensor: Tensor, with_grad: bool = False, counts: list[int] | None = None) -> Tensor:
        """Every rank's ``tensor`` (any number of rows, same trailing shape) concatenated in rank order, on every
        rank. ``with_grad``: gradients flow back to each rank's rows (summed over the ranks' losses). ``counts``: each
        rank's number of rows when known (saves exchanging them)."""
        if not self.distributed:
            return tensor
        device = tensor.device
        if counts is None:
            sizes = torch.tensor([tensor.shape[0]], device=self._comm_device())
            all_sizes = [torch.zeros_like(sizes) for _ in range(self.world)]
            dist.all_gather(all_sizes, sizes)
            counts = [int(size.item()) for size in all_sizes]
        padded = nn.functional.pad(tensor.to(self._comm_device()),
                                   (0, 0) * (tensor.dim() - 1) + (0, max(counts) - tensor.shape[0]))
        if with_grad:
            from torch.distributed.nn.functional import all_gather  # its backward sums the ranks' gradients

            parts = list(all_gather(padded))
        else:
            parts = [torch.empty_like(padded) for _ in range(self.world)]
            dist.all_gather(parts, padded.contiguous())
        return torch.cat([part[:count] for part, count in zip(parts, counts)]).to(device)

    def average_gradients(self, parameters: Iterable[nn.Parameter]) -> None:
        """Average the parameters' gradients over the ranks in one all-reduce (a missing gradient counts as zero)."""
        if not self.distributed:
            return
        grads = []
        for parameter in parameters:
            if parameter.grad is None:
                parameter.grad = torch.zeros_like(parameter)
            grads.append(parameter.grad)
        flat = torch.cat([grad.reshape(-1) for grad in grads]).to(self._comm_device())
        dist.all_reduce(flat)
        flat /= self.world
        offset = 0
        for grad in grads:
            grad.copy_(flat[offset:offset + grad.numel()].view_as(grad))
            offset += grad.numel()

    def all_gather_bytes(self, data: bytes) -> list[bytes]:
        """Every rank's ``data``, in rank order, on every rank."""
        if not self.distributed:
            return [data]
        device = self._comm_device()
        local = torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else torch.empty(0, dtype=torch.uint8)
        sizes = torch.tensor([len(data)], device=device)
        all_sizes = [torch.zeros_like(sizes) for _ in range(self.world)]
        dist.all_gather(all_sizes, sizes)
        counts = [int(size.item()) for size in all_sizes]
        gathered = self.gather_rows(local.to(device), counts=counts)
        out, offset = [], 0
        for count in counts:
            out.append(gathered[offset:offset + count].cpu().numpy().tobytes())
            offset += count
        return out

    def broadcast_bytes(self, data: bytes | None, src: int = 0) -> bytes:
        """``data`` of rank ``src`` on every rank (the others pass None)."""
        if not self.distributed:
            return data or b""
        return self.all_gather_bytes((data or b"") if self.rank == src else b"")[src]

    def all_gather_json(self, value: Any) -> list[Any]:
        return [json.loads(part) for part in self.all_gather_bytes(json.dumps(value).encode("utf-8"))]

    def broadcast_json(self, value: Any, src: int = 0) -> Any:
        return json.loads(self.broadcast_bytes(json.dumps(value).encode("utf-8") if self.rank == src else None, src))

    def on_main(self, work: Callable[[], T]) -> T:
        """``work()`` run by the main process alone, its JSON-able result on every rank; its error, raised on the
        main process, is raised on every other rank too (as the same builtin kind, e.g. FileExistsError, with
        ``the main process (rank 0) failed: ...``), so none waits forever and a bad input stays a one-line error."""
        if not self.distributed:
            return work()
        if self.is_main:
            try:
                result = work()
            except BaseException as error:
                kind = next(c.__name__ for c in type(error).__mro__ if c.__module__ == "builtins")
                self.broadcast_json({"error": f"{type(error).__name__}: {error}", "kind": kind})
                raise
            self.broadcast_json({"result": result})
            return result
        reply = self.broadcast_json(None)
        if "error" in reply:  # raised here as the builtin kind it was (a bad input stays a one-line ValueError)
            raise _builtin_kind(reply["kind"])(f"the main process (rank 0) failed: {reply['error']}")
        return reply["result"]

    def broadcast_module(self, module: nn.Module, src: int = 0) -> None:
        """Every parameter and buffer of ``module`` set to rank ``src``'s values."""
        if not self.distributed:
            return
        with torch.no_grad():
            for tensor in list(module.parameters()) + list(module.buffers()):
                carrier = tensor.detach().to(self._comm_device()).contiguous()
                dist.broadcast(carrier, src)
                tensor.copy_(carrier.to(tensor.device))


def _builtin_kind(name: str) -> type[BaseException]:
    import builtins

    kind = getattr(builtins, name, RuntimeError)
    return kind if isinstance(kind, type) and issubclass(kind, Exception) else RuntimeError


def current_ranks() -> Ranks:
    """This process's :class:`Ranks`, joining the launcher's process group (once) when there is one."""
    if launched_world_size() <= 1 and not (dist.is_available() and dist.is_initialized()):
        return Ranks(0, 1, torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    from accelerate import PartialState  # type: ignore[import-untyped]  # accelerate ships no type hints

    state = PartialState(cpu=not torch.cuda.is_available())  # gloo on CPU, NCCL on GPUs (one per local rank)
    if state.num_processes > 1 and not dist.is_initialized():
        raise RuntimeError(f"WORLD_SIZE={launched_world_size()} but no process group could be joined: start the job "
                           "with torchrun or accelerate launch")
    device = torch.device(state.device)
    if device.type == "cpu":
        device = torch.device("cpu")  # accelerate may say cpu:0; tensors saved from there would not load back
    return Ranks(state.process_index, state.num_processes, device)


__all__ = ["Ranks", "current_ranks", "launched_world_size"]
