"""Image augmentations of DrQ (Kostrikov et al. 2020) and DrQ-v2 (Yarats et al. 2021).

Pixels arrive as ``(B, C, H, W)`` uint8 or float tensors. Shifts are exact integer translations
with edge replication, written as index gathers with clamped indices: that is the same as
replicate-padding and cropping, without allocating the padded image, and it keeps uint8 as uint8
so augmentation can run on the replay batch before the float conversion.
"""

from __future__ import annotations

import torch


def take_shifted(x: torch.Tensor, dim: int, offset: torch.Tensor) -> torch.Tensor:
    """``out[b, ..., i, ...] = x[b, ..., clamp(i + offset[b]), ...]`` along ``dim`` (2 or 3).

    offset: integer tensor of shape (B,) or (1,). Clamping the index to the image repeats the
    edge pixel, exactly what a replicate pad followed by a crop gives. One offset for the whole batch
    (A-LIX's shift, the batch crop) is an ``index_select`` of whole rows or columns: the same values and
    gradients as the gather, at about half its cost; on the CPU, where reading the offset costs no
    device sync, ``ReplicateShift`` copies slices instead (the same values and gradients again, bit for
    bit; torch's CPU ``index_select`` along the last axis is ~15x slower than that copy)."""
    n = x.shape[dim]
    if offset.numel() == 1:
        if x.device.type == "cpu" and offset.device.type == "cpu":
            return ReplicateShift.apply(x, dim, int(offset.reshape(())))
        return x.index_select(dim, (offset.reshape(1) + torch.arange(n, device=x.device)).clamp_(0, n - 1))
    index = (offset.view(-1, 1) + torch.arange(n, device=x.device)).clamp_(0, n - 1)  # (B, n)
    shape = [1, 1, 1, 1]
    shape[0], shape[dim] = index.shape
    index = index.view(shape).expand(*x.shape[:dim], n, *x.shape[dim + 1:])
    return x.gather(dim, index)


class ReplicateShift(torch.autograd.Function):
    """``x.index_select(dim, clamp(arange(n) + offset, 0, n - 1))`` for one integer offset, as slice copies.

    Output position i reads clamp(i + offset): the first ``head`` positions repeat x's first slice, the
    last ``tail`` its last one, and the ``middle`` between are a contiguous run of x. The backward adds the
    output gradient into zeros in the order of ``index_add_`` (the index_select's backward): ascending
    output position, so an edge slice sums its several gradients (0 + g_0) + g_1 + ... exactly as before."""

    @staticmethod
    def parts(n: int, offset: int) -> tuple[int, int, int]:
        head = min(max(-offset, 0), n)  # positions i with i + offset < 0
        tail = min(max(offset, 0), n - head)  # positions i with i + offset > n - 1
        return head, n - head - tail, tail

    @staticmethod
    def forward(ctx, x: torch.Tensor, dim: int, offset: int) -> torch.Tensor:
        n = x.shape[dim]
        head, middle, tail = ReplicateShift.parts(n, offset)
        ctx.dim, ctx.offset = dim, offset
        pieces = []
        if head:
            pieces.append(x.narrow(dim, 0, 1).expand(*x.shape[:dim], head, *x.shape[dim + 1:]))
        if middle:
            pieces.append(x.narrow(dim, head + offset, middle))
        if tail:
            pieces.append(x.narrow(dim, n - 1, 1).expand(*x.shape[:dim], tail, *x.shape[dim + 1:]))
        return torch.cat(pieces, dim)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        dim, offset = ctx.dim, ctx.offset
        n = grad.shape[dim]
        head, middle, tail = ReplicateShift.parts(n, offset)
        out = torch.zeros_like(grad, memory_format=torch.contiguous_format)
        for i in range(head):  # into the first slice, one after another
            out.select(dim, 0).add_(grad.select(dim, i))
        if middle:
            out.narrow(dim, head + offset, middle).add_(grad.narrow(dim, head, middle))
        for i in range(n - tail, n):  # into the last slice, after the middle's last position
            out.select(dim, n - 1).add_(grad.select(dim, i))
        return out, None, None


def translate(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """Integer translation with edge replication: ``out[b, c, i, j] = x[b, c, i + dy[b], j + dx[b]]``
    with indices clamped into the image. dy, dx: integer tensors of shape (B,) or (1,).
    Differentiable in x (gather), any dtype."""
    return take_shifted(take_shifted(x, 2, dy.to(x.device)), 3, dx.to(x.device))


def sample_shifts(batch: int, pad: int, generator: torch.Generator | None = None,
                  device: torch.device | str | None = None, last_offset: bool = True) -> torch.Tensor:
    """One crop offset per sample and axis, uniform in [0, 2 * pad] (in [0, 2 * pad - 1] without
    ``last_offset``): int64 of shape (B, 2), columns (row, column). Drawn on the generator's device
    so a seeded CPU generator gives the same shifts whatever device the images live on."""
    draw_on = generator.device if generator is not None else device
    shifts = torch.randint(0, 2 * pad + int(last_offset), (batch, 2), generator=generator, device=draw_on)
    return shifts.to(device) if device is not None else shifts


def random_shift(x: torch.Tensor, pad: int = 4, generator: torch.Generator | None = None,
                 shifts: torch.Tensor | None = None, last_offset: bool = True) -> torch.Tensor:
    """DrQ-v2's RandomShiftsAug: replicate-pad by ``pad``, crop back to (H, W) at a per-sample
    offset in [0, 2 * pad] on each axis. Offset ``pad`` is the identity.

    DrQ-v2 writes this with ``grid_sample``, but its grid lands exactly on pixel centres, so it
    is an integer translation; done here as one (no interpolation error, dtype kept, uint8 works).

    shifts: optional (B, 2) integer offsets (row, column) in [0, 2 * pad], e.g. for tests;
    otherwise drawn with ``sample_shifts`` (``last_offset``: see there).
    """
    if shifts is None:
        shifts = sample_shifts(x.shape[0], pad, generator, x.device, last_offset)
    shifts = shifts.to(x.device)
    return translate(x, shifts[:, 0] - pad, shifts[:, 1] - pad)


def intensity_factors(batch: int, scale: float = 0.05, generator: torch.Generator | None = None,
                      device: torch.device | str | None = None) -> torch.Tensor:
    """DrQ's Atari intensity noise ``1 + scale * clip(N(0, 1), -2, 2)``, one per sample: (B, 1, 1, 1).
    With scale 0.05 the factors lie in [0.9, 1.1]."""
    draw_on = generator.device if generator is not None else device
    noise = torch.randn(batch, generator=generator, device=draw_on).clamp_(-2.0, 2.0)
    factors = (1.0 + scale * noise).view(batch, 1, 1, 1)
    return factors.to(device) if device is not None else factors


def drq_atari_augment(x: torch.Tensor, pad: int = 4, intensity_scale: float = 0.05,
                      generator: torch.Generator | None = None, crop: str = "sample") -> torch.Tensor:
    """DrQ's Atari 100k augmentation (Dopamine): edge pad ``pad`` + random crop back to size,
    then multiply each sample by ``1 + intensity_scale * clip(N(0, 1), -2, 2)``.

    crop: ``sample`` draws a crop offset for each image (Dopamine since commit 1bb064b, February 2022;
    the DrQ paper's own code crops each image with kornia's RandomCrop), ``batch`` one offset for the
    whole batch (Dopamine's ``labs/atari_100k/atari_100k_rainbow_agent.py`` at commit 88ca537,
    ``jax.random.randint(..., shape=())``: the code Dopamine released with Agarwal et al. 2021,
    arXiv 2108.13264, whose 100 DrQ(eps) runs we compare with). The intensity factor is per sample in both.

    Expects floats, either in [0, 1] or in [0, 255] (the noise is multiplicative, so the scale
    does not matter); uint8 input is converted to float. Returns float. The shift is drawn before
    the intensity noise (none is drawn when pad is 0), so a seeded generator replays both.

    Crop offsets are 0 .. 2 * pad - 1 as in Dopamine's code (``randint(0, 92 - 84)``, whose upper
    bound is exclusive): shifts of -4 .. +3 pixels, not the paper's symmetric +-4. The published
    DrQ / DrQ(eps) scores come from that code, so it is followed.
    """
    if not x.is_floating_point():
        x = x.float()
    if crop not in ("sample", "batch"):
        raise ValueError(f"crop is '{crop}'; choose sample or batch.")
    if pad > 0:
        shifts = sample_shifts(x.shape[0] if crop == "sample" else 1, pad, generator, x.device, last_offset=False)
        x = random_shift(x, pad, shifts=shifts)
    return x * intensity_factors(x.shape[0], intensity_scale, generator, x.device).to(x.dtype)

