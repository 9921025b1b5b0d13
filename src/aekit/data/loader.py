"""BatchLoader: minibatches cut from a data set that stays one tensor on its device.

No workers, no per-example Python: an epoch is one permutation tensor, a batch is one indexing
``x[idx]``. Everything random is a pure function of (seed, epoch, batch), so a resumed run replays
exactly the batches it would have seen, and a run on W processes sees exactly the batches of a
one-process run, cut into W contiguous pieces.
"""

from __future__ import annotations

from typing import Iterator

import torch

from ..errors import AekitError
from .dataset import ArrayDataset
from .transforms import bernoulli_from_uniform, check_unit_range, derive_seed, seeded_generator


class BatchLoader:
    """Iterate (x, y) minibatches of ``data`` for one epoch at a time.

    Epoch e uses the permutation π_e = randperm(N) from a generator seeded with
    ``derive_seed("permutation", seed, e)`` on the data's device (so the order depends on the
    device type: CPU and CUDA generators differ). Global batch b is π_e[b·B : (b+1)·B].

    Distributed: ``batch_size`` B is the global batch. Every rank computes the same π_e and rank r
    of W keeps the contiguous slice [⌊r·b/W⌋, ⌊(r+1)·b/W⌋) of each global batch of b examples
    (b = B for full batches, so each rank gets B/W). The last, short global batch
    (``drop_last=False``) is split as evenly as possible: ranks may then differ by one example,
    and a rank gets an empty batch when b < W.

    Dynamic binarization: x̃ = 1[u < x] with u ~ U[0, 1) drawn for the whole global batch b from
    a generator seeded with ``derive_seed("dynamic-binarize", seed, e, b)``, then sliced like the data, so
    an example's binary sample does not depend on W nor on where a resumed run starts.

    Call :meth:`set_epoch` before every epoch; iterating again without it replays the same epoch.
    """

    def __init__(
        self,
        data: ArrayDataset,
        batch_size: int,
        *,
        shuffle: bool = True,
        drop_last: bool = False,
        dynamic_binarize: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ):
        if batch_size < 1:
            raise AekitError(f"batch_size must be >= 1, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise AekitError(f"rank must be in [0, world_size) and world_size >= 1, got rank {rank} of {world_size}")
        if batch_size % world_size:
            raise AekitError(
                f"batch_size {batch_size} is the global batch and must be divisible by the {world_size} "
                f"processes; use a multiple of {world_size}"
            )
        if drop_last and 0 < len(data) < batch_size:
            raise AekitError(
                f"batch_size {batch_size} exceeds the {len(data)} examples of {data.name} and drop_last leaves "
                f"no batch; lower --batch-size"
            )
        if dynamic_binarize:
            check_unit_range(data.x, f"{data.name} (dynamic binarization)")
        self.data = data
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.dynamic_binarize = dynamic_binarize
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.start_batch = 0

    def __len__(self) -> int:
        """Batches per epoch (the same on every rank)."""
        n, b = len(self.data), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select epoch ``epoch`` and skip its first ``start_batch`` batches (resuming mid-epoch)."""
        if epoch < 0:
            raise AekitError(f"epoch must be >= 0, got {epoch}")
        if not 0 <= start_batch <= len(self):
            raise AekitError(
                f"start_batch {start_batch} is outside the {len(self)} batches of an epoch; resume with the "
                f"batch size the run was started with"
            )
        self.epoch = epoch
        self.start_batch = start_batch

    def _order(self) -> torch.Tensor:
        """π_e, the example order of the current epoch: (N,) int64 on the data's device."""
        device = self.data.x.device
        if not self.shuffle:
            return torch.arange(len(self.data), device=device)
        generator = seeded_generator(derive_seed("permutation", self.seed, self.epoch), device)
        return torch.randperm(len(self.data), generator=generator, device=device)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        x, y = self.data.x, self.data.y
        order = self._order()
        for batch in range(self.start_batch, len(self)):
            members = order[batch * self.batch_size:(batch + 1) * self.batch_size]  # global batch, (b,)
            b = len(members)
            lo, hi = self.rank * b // self.world_size, (self.rank + 1) * b // self.world_size
            idx = members[lo:hi]  # this rank's slice, (b/W,)
            xb = x[idx]  # (b/W, D)
            if self.dynamic_binarize:
                generator = seeded_generator(derive_seed("dynamic-binarize", self.seed, self.epoch, batch), x.device)
                u = torch.rand((b, x.shape[1]), generator=generator, device=x.device, dtype=x.dtype)
                xb = bernoulli_from_uniform(xb, u[lo:hi])
            yield xb, None if y is None else y[idx]
