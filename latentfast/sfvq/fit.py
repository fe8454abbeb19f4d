"""The SFVQ training recipe (Vali & Bäckström): quartile start, doubling stages, dithered nearest-point training.

Recipe (the authors' defaults are ours):

* **Start** (``init="data"``, the default).  Sort the latents by Euclidean norm, cut the sorted list into 4
  equal groups (``N // 4`` rows each; the last ``N % 4`` rows of the sorted list are left out, as in the
  authors' ``codebook_initialization``) and take the group means as the first 4 vertices.  The curve therefore
  starts near the smallest latents and ends near the largest.  The authors' published train.py applies that
  function to ``torch.randn(10000, D)``, not to the data; ``init="randn"`` reproduces that (drawn from the
  fit's generator).  Measured on 16,384 W latents of the embedded generator (D = 64, the defaults below,
  generator seeds 0-2), the random start ends with a mean squared distance 6.4-8.4 % larger than the data start
  at M = 16 and 3.0-3.9 % larger at M = 32 (``python -m benchmarks.sfvq_init``, results in
  benchmarks/results/sfvq_init_cpu.txt).
* **Stages.** 4 -> 8 -> 16 -> ... vertices.  Growing keeps the curve: every old vertex i stays and gets a twin
  on its own curve, 1 % (``twin_eps``) of the way along a neighbouring segment; in the first half of the curve
  the twin goes toward the next vertex (fractional index i + eps), in the second half toward the previous one
  (i - eps).  Right after growing, the new curve is the old one with extra (almost coincident) vertices.
* **Training step.** One lambda ~ U[0, 1) per segment, shared by the whole batch, gives one "dithered" point per
  segment, ``c_j + lambda_j (c_{j+1} - c_j)``; every latent is assigned to its nearest dithered point (no
  projection onto segments during training), the quantized value is that dithered point (differentiable in the
  vertices), and the loss is the mean squared error over all N x D entries.  Adam, a fresh optimizer per stage,
  learning rate halved at 60 % and 80 % of the stage's epochs (``MultiStepLR(milestones=[int(.6 E), int(.8 E)],
  gamma=.5)`` stepped once per epoch), batch 64, 5 epochs per stage; the remainder batch (N mod batch_size rows)
  is dropped, as in the authors' loop, and latents are visited in their given order unless ``shuffle=True``.

Choices where the authors' code has none:

* ``num_vertices`` that is not a power of two: stages double while doubling stays below ``num_vertices``; the
  last stage grows from the power of two P below it to exactly ``num_vertices`` by twinning only
  ``num_vertices - P`` of the P vertices, spread evenly along the curve (vertex ``floor((k + 0.5) P / r)`` for
  k < r twins), each twin placed by the same half-of-the-curve rule.  A power of two gives exactly the
  authors' schedule.  ``num_vertices`` of 2 or 3 starts from 2 or 3 norm-quantile means and has one stage.
* Fewer latents than ``batch_size``: one batch of all of them per epoch (the authors' loop would train on none).

Memory: the nearest dithered point comes from :func:`latentfast.nearest_point` (chunked, exact); nothing of
size N x D x M is ever allocated, and the latents are read a batch at a time (a memory-mapped ``.npy`` works).

Scale: latents whose largest magnitude is outside [2^-20, 2^20] are trained on as latents * 2^s, s the
power of two that brings it into [0.5, 1) (exact), and the vertices and every reported loss are scaled back
exactly; ``lr`` then counts in those units.  Inside that range the latents are used as given.  Without this,
1e20-scale float32 data overflow (inf losses) and 1e-20-scale data underflow (zero losses, no learning).

Resuming and many processes: see :func:`fit_sfvq` (``checkpoint``, ``resume``, ``process_group``) and
:mod:`latentfast.sfvq.checkpoint`.
"""
from __future__ import annotations

import math
import os
import signal
import threading
import time
from pathlib import Path
from typing import Optional, Tuple

import torch

from .. import _checks, _io
from .._progress import progress as progress_bar
from ..ops.segment_assign import nearest_point
from ..ops.small_linalg._threads import single_threaded
from . import _fast_step, _files
from . import checkpoint as _ckpt
from ._data import Latents, ldexp, unscale_sq
from .distributed import Comm, split
from .stages import TWIN_EPS, grow, initial_vertices, stage_sizes
from .training_log import SFVQStageLog, SFVQTrainingLog, _Tally

Tensor = torch.Tensor


def _lr_at_epoch(lr: float, epoch: int, epochs: int) -> float:
    """The learning rate of ``MultiStepLR(milestones=[int(0.6 E), int(0.8 E)], gamma=0.5)`` stepped per epoch.

    Equal milestones count twice and a milestone of 0 already applies to the first epoch, both as in
    MultiStepLR (with 1 epoch per stage the authors' scheduler therefore trains at lr / 4).
    """
    milestones = [int(epochs * 0.6), int(epochs * 0.8)]
    drops = sum(1 for m in milestones if m <= epoch)
    return lr * 0.5 ** drops


def _stepper(vertices: Tensor, optimizer, rows: int, lam_len: int, chunk_size: Optional[int], comm: Comm):
    """The native step prepared for a stage whose batches are (rows, D) and dithers (lam_len,), or None."""
    if comm.active or chunk_size is not None:
        return None
    x = torch.empty(rows, vertices.shape[1], dtype=vertices.dtype, device=vertices.device)
    lam = torch.empty(lam_len, dtype=vertices.dtype, device=vertices.device)
    if _fast_step.fast_step_why_not(vertices, optimizer, x, lam, "auto", values=False):
        return None
    return _fast_step.Stepper(vertices, optimizer, x)


def _draw_uniform(n: int, generator: Optional[torch.Generator], device, dtype) -> Tensor:
    if generator is None:
        return torch.rand(n, device=device, dtype=dtype)
    # drawn on the generator's own device, so a CPU generator also drives CUDA training reproducibly
    return torch.rand(n, generator=generator, device=generator.device, dtype=dtype).to(device)


def _draw_normal(shape, generator: torch.Generator) -> Tensor:
    """float32 N(0, 1) of ``shape`` on the CPU, drawn on the generator's device (the published start's data)."""
    return torch.randn(shape, generator=generator, device=generator.device, dtype=torch.float32).cpu()


def _draw_permutation(n: int, generator: Optional[torch.Generator], device) -> Tensor:
    if generator is None:
        return torch.randperm(n, device=device)
    return torch.randperm(n, generator=generator, device=generator.device).to(device)


def train_step(vertices: Tensor, optimizer: torch.optim.Optimizer, x: Tensor, lam: Tensor, *,
               chunk_size: Optional[int] = None, backend: str = "auto",
               stepper: Optional[_fast_step.Stepper] = None) -> Tuple[Tensor, Tensor]:
    """One SFVQ training step (the body of :func:`fit_sfvq`'s batch loop; also timed by benchmarks/).

    vertices (M, D) leaf tensor optimised by ``optimizer``; x (B, D) batch; lam (M - 1,) dither in [0, 1).
    Dithered points c_j + lam_j (c_{j+1} - c_j), nearest one per row of x (``nearest_point`` with ``backend``),
    MSE to it, backward, optimizer step.  Returns (loss (detached scalar), idx (B,) int64 segment indices).

    On CPU with the native extension, for the optimizer fit_sfvq makes (``torch.optim.Adam(fused=True)`` over
    the vertices alone), backend "auto"/"native", no chunk_size and no torch.distributed process group, the
    whole step runs in one native call (latentfast/sfvq/_fast_step.py): the same assignments and Adam
    arithmetic, the loss summed in float64, and ``vertices.grad`` left None (no dense gradient is formed).
    Otherwise: autograd, with the dense vertex gradient in ``vertices.grad`` before ``optimizer.step()``.
    ``stepper``: that native step already prepared for these vertices and optimizer (fit_sfvq makes one per
    stage, :func:`_stepper`); the per-call checks are skipped, so x and lam must be like the batches it was
    made for (shape, dtype, device; lam contiguous).
    """
    if stepper is not None:  # fit_sfvq's stage batches: non-empty, of the shape the Stepper was made for
        loss, idx = stepper.step(x, lam)
        return torch.tensor(loss, dtype=vertices.dtype), idx
    _checks.check_nonempty("x", x)  # an empty batch has no loss (the MSE of nothing is NaN)
    if chunk_size is None and not _fast_step.fast_step_why_not(vertices, optimizer, x, lam, backend):
        return _fast_step.fast_step(vertices, optimizer, x, lam)
    # decode(j + lambda_j): floor is j itself because 0 <= lambda < 1
    a = vertices[:-1]
    dithered = a + lam.unsqueeze(1) * (vertices[1:] - a)
    with torch.no_grad():
        idx = nearest_point(x, dithered.detach(), chunk_size=chunk_size, backend=backend).index
    loss = torch.nn.functional.mse_loss(dithered[idx], x)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach(), idx


def _adam(vertices: Tensor, lr: float) -> torch.optim.Optimizer:
    """Adam as the authors use it; the fused implementation (one pass over the parameters instead of about ten,
    measured 27 -> 19 ms per step at M = 1024, batch 64 on one CPU thread) where this torch and device have it."""
    try:
        return torch.optim.Adam([vertices], lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam([vertices], lr=lr)


class _Interrupt:
    """While active (main thread only), SIGINT sets ``raised`` instead of raising: the fit finishes its step,
    writes the checkpoint and raises KeyboardInterrupt itself.  A second SIGINT raises at once."""

    def __init__(self, enabled: bool):
        self.raised = False
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self._previous = None

    def _handle(self, signum, frame):
        if self.raised:
            raise KeyboardInterrupt
        self.raised = True

    def __enter__(self):
        if self.enabled:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc):
        if self.enabled:
            signal.signal(signal.SIGINT, self._previous)
        return False


def _dp_step(vertices: Tensor, optimizer, x: Tensor, lam: Tensor, global_rows: int, comm: Comm, stop: bool, *,
             chunk_size: Optional[int] = None) -> Tuple[Tensor, Tensor, bool]:
    """:func:`train_step` of one rank of a process group: x is this rank's part of a global batch of
    ``global_rows`` rows.  Its loss is its squared errors over global_rows x D, so the all-reduced gradient
    sum is the gradient of the global batch MSE; one all-reduce carries the gradient, the loss, the segment
    counts and the ranks' stop flags.  Returns (global loss, global segment counts (M - 1,) int64, stop)."""
    m, d = vertices.shape
    a = vertices[:-1]
    dithered = a + lam.unsqueeze(1) * (vertices[1:] - a)
    with torch.no_grad():
        idx = nearest_point(x, dithered.detach(), chunk_size=chunk_size).index
    loss = (dithered[idx] - x).pow(2).sum() / (global_rows * d)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    flag = torch.tensor([1.0 if stop else 0.0], dtype=vertices.dtype, device=vertices.device)
    buf = torch.cat([vertices.grad.reshape(-1), loss.detach().reshape(1),
                     torch.bincount(idx, minlength=m - 1).to(vertices.dtype), flag])
    comm.sum_(buf)
    md = m * d
    vertices.grad.copy_(buf[:md].view(m, d))
    optimizer.step()
    return buf[md], buf[md + 1: md + m].round().to(torch.int64), bool(buf[-1] > 0)


def _check_float(name: str, value, ok) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not ok(value):
        raise ValueError(f"{name}: expected {'a finite positive number' if name == 'lr' else 'a number in (0, 0.5)'}"
                         f", got {value!r}")
    return float(value)


def _on_all_ranks(comm: Comm, name: str, fn):
    """Run ``fn``; a ValueError on any rank becomes a ValueError on every rank (none is left waiting)."""
    if not comm.active:
        return fn()
    out, error = None, None
    try:
        out = fn()
    except ValueError as e:
        error = str(e)
    comm.agree(error, name)
    return out


def fit_sfvq(
    latents,
    num_vertices: int,
    *,
    epochs_per_stage: int = 5,
    batch_size: int = 64,
    lr: float = 1e-3,
    shuffle: bool = False,
    progress: bool = True,
    generator: Optional[torch.Generator] = None,
    twin_eps: float = TWIN_EPS,
    chunk_size: Optional[int] = None,
    checkpoint=None,
    checkpoint_every: Optional[int] = None,
    resume: bool = False,
    init: str = "data",
    process_group=None,
    dim: Optional[int] = None,
):
    """Train an SFVQ curve of ``num_vertices`` vertices on ``latents`` (N, D); see the module docstring.

    latents: (N, D) floating tensor, numpy array or memory-mapped ``.npy`` (``np.load(p, mmap_mode="r")``: read
    a batch at a time, never copied whole); ``dim``: required D (used by :meth:`SFVQ.fit`).
    Returns ``(vertices, log)``: vertices (num_vertices, D) detached, on the latents' device, in their dtype
    (float32 for float16/bfloat16 input), and an :class:`SFVQTrainingLog`.  Randomness (the start for
    ``init="randn"``, the dither, the epoch permutation when ``shuffle``) comes only from ``generator`` when
    given (else from a generator seeded by torch's global RNG), so a generator seeded the same way gives
    bitwise the same curve on the same machine and backend.

    init: ``"data"`` (4 norm-quartile means of the latents) or ``"randn"`` (the published train.py: the same
    means of ``torch.randn(10000, D)``, drawn from the generator).
    checkpoint: path of the training state, written atomically (and checksummed) every ``checkpoint_every``
    steps when given, at every epoch and stage end, and on KeyboardInterrupt (SIGINT lets the step finish,
    writes the state of the last completed step, then re-raises KeyboardInterrupt).  ``resume=True``
    continues from it, bit-identical to a fit that never stopped; without ``resume`` an existing checkpoint
    file is refused.
    process_group: a ``torch.distributed`` group, or None for the default group when one is initialised:
    every rank passes the same latents (a memory map keeps each rank reading only its rows), takes its
    contiguous part of every global batch of ``batch_size`` rows, and the gradient sums are all-reduced, so
    the fit equals one process's; only rank 0 writes files and prints.
    Raises ValueError/TypeError naming the argument for bad shapes, NaN/Inf, too few latents (N < 4, or
    N < num_vertices when num_vertices < 4), bad counts, a generator that is not a ``torch.Generator``, or a
    checkpoint that is missing, corrupt or for other arguments or latents.
    """
    num_vertices = _checks.check_int("num_vertices", num_vertices, low=2)
    epochs = _checks.check_int("epochs_per_stage", epochs_per_stage, low=1)
    batch_size = _checks.check_int("batch_size", batch_size, low=1)
    lr = _check_float("lr", lr, lambda v: v > 0)
    twin_eps = _check_float("twin_eps", twin_eps, lambda v: 0 < v < 0.5)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator: expected a torch.Generator or None, got an object of type "
                        f"{type(generator).__name__}")
    _checks.check_choice("init", init, ["data", "randn"])
    if checkpoint_every is not None:
        checkpoint_every = _checks.check_int("checkpoint_every", checkpoint_every, low=1)
    if checkpoint is None and (checkpoint_every is not None or resume):
        raise ValueError(f"checkpoint: expected a path when {'resume=True' if resume else 'checkpoint_every'} "
                         f"is given, got None")
    if not isinstance(resume, bool):
        raise TypeError(f"resume: expected True or False, got {resume!r}")
    path = os.fspath(checkpoint) if checkpoint is not None else None

    comm = Comm.of(process_group)
    data = Latents(latents, dim, comm)
    n, dtype, device, shift = data.n, data.dtype, data.device, data.shift
    bsz = min(batch_size, n)
    num_batches = n // bsz  # remainder dropped, as in the authors' loop
    if bsz < comm.world_size:
        raise ValueError(f"batch_size: expected at least one row per process ({comm.world_size}), got {bsz}")
    part = split(bsz, comm.world_size, comm.rank)
    rows_per_rank = [split(bsz, comm.world_size, r).stop - split(bsz, comm.world_size, r).start
                     for r in range(comm.world_size)]
    gen = generator
    if gen is None:
        gen = torch.Generator().manual_seed(int(torch.randint(0, 2 ** 62, (1,))))
    if comm.active:  # one dither for all ranks: rank 0's generator
        state = gen.get_state()
        comm.broadcast_(state)
        gen.set_state(state)

    sizes = stage_sizes(num_vertices)
    config = {"num_vertices": num_vertices, "epochs_per_stage": epochs, "batch_size": bsz, "lr": lr,
              "shuffle": bool(shuffle), "twin_eps": twin_eps, "init": init, "dtype": str(dtype),
              "scale_log2": shift}
    fingerprint = data.fingerprint()
    if comm.active:
        mine = torch.tensor(list(bytes.fromhex(_files.checksum({"c": config, "l": fingerprint}))),
                            dtype=torch.float64)
        ref = comm.broadcast_(mine.clone())
        comm.agree(None if torch.equal(mine, ref) else
                   f"process_group: rank {comm.rank}'s fit arguments or latents differ from rank 0's", "process_group")

    def _load():
        if resume:
            return _ckpt.load(path, config, fingerprint)
        if path is not None and os.path.exists(path):
            raise ValueError(f"checkpoint: {path!r} exists; pass resume=True to continue that fit, or remove it")
        if path is not None:  # fail now, not at the first checkpoint after minutes of training
            _io.check_writable_parent("checkpoint", Path(path))
        return None

    saved = _on_all_ranks(comm, "checkpoint", _load)
    log = SFVQTrainingLog(batch_size=bsz, init=init, scale_log2=shift)
    started, epoch, batch, step = False, 0, 0, 0
    stage_no = 0
    if saved is not None:
        log = SFVQTrainingLog.from_dict(saved["log"])
        gen.set_state(saved["generator"])
        stage_no, started, epoch, batch, step = (int(saved["stage"]), bool(saved["stage_started"]),
                                                 int(saved["epoch"]), int(saved["batch"]), int(saved["step"]))
        curve = saved["curve"].to(device=device, dtype=dtype)
    elif init == "data":
        curve = data.start_vertices(sizes[0])
    else:
        curve = ldexp(initial_vertices(_draw_normal((10000, data.d), gen)).to(device=device, dtype=dtype), shift)
    log.world_size, log.rows_per_rank = comm.world_size, rows_per_rank
    run = {"world_size": comm.world_size, "rows_per_rank": rows_per_rank, "first_step": step, "steps": 0}
    log.runs.append(run)
    seconds_before, t0 = log.seconds, time.perf_counter()
    stage = vertices = optimizer = seg_counts = gen_epoch = tally = stepper = None
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    perp_sum = torch.zeros((), dtype=torch.float64, device=device)
    in_step, saved_at = False, None

    def unscale(t: Tensor) -> Tensor:  # back to the latents' units (x 2^0 is x itself, bit for bit)
        return ldexp(t, -shift) if shift else t

    def flush():
        nonlocal loss_sum, perp_sum
        if tally is not None:
            loss_sum, perp_sum = tally.flush(seg_counts, loss_sum, perp_sum)

    def save():
        nonlocal saved_at
        flush()
        saved_at = step
        if path is None or comm.rank != 0:
            return
        log.seconds = seconds_before + time.perf_counter() - t0
        _ckpt.save(path, {
            "config": config, "latents": fingerprint, "stage": stage_no, "stage_started": started,
            "epoch": epoch, "batch": batch, "step": step,
            "curve": (vertices.detach() if started else curve).cpu().clone(),
            "optimizer": optimizer.state_dict() if started else None,
            "generator": gen.get_state(), "generator_epoch": gen_epoch if started else None,
            "stage_log": stage.to_dict() if started else None,
            "seg_counts": seg_counts.cpu() if started else None,
            "loss_sum": loss_sum.cpu(), "perp_sum": perp_sum.cpu(), "log": log.to_dict()})

    bar = progress_bar(total=len(sizes) * epochs * num_batches, initial=step, desc="sfvq fit", unit="step",
                       enabled=progress and comm.rank == 0)
    with _Interrupt(path is not None) as interrupt, bar:
        try:
            while stage_no < len(sizes):
                m = sizes[stage_no]
                if not started:
                    if m != curve.shape[0]:
                        with single_threaded(curve):  # elementwise and gathers: the same bits on any thread count
                            curve = grow(curve, m, twin_eps)
                    stage = SFVQStageLog(num_vertices=m, initial_vertices=unscale(curve.detach()).cpu().clone())
                    vertices = curve.detach().clone().requires_grad_(True)
                    optimizer = _adam(vertices, lr)
                    seg_counts = torch.zeros(m - 1, dtype=torch.int64, device=device)
                    started, epoch, batch = True, 0, 0
                else:  # resumed inside this stage
                    stage = SFVQStageLog.from_dict(saved["stage_log"])
                    vertices = curve.detach().clone().requires_grad_(True)
                    optimizer = _adam(vertices, lr)
                    optimizer.load_state_dict(saved["optimizer"])
                    seg_counts = saved["seg_counts"].to(device)
                    loss_sum, perp_sum = saved["loss_sum"].to(device), saved["perp_sum"].to(device)
                    gen_epoch = saved["generator_epoch"]
                saved = None
                tally = _Tally(m - 1)
                stepper = _stepper(vertices, optimizer, part.stop - part.start, m - 1, chunk_size, comm)
                while epoch < epochs:
                    for group in optimizer.param_groups:
                        group["lr"] = _lr_at_epoch(lr, epoch, epochs)
                    if batch == 0:
                        gen_epoch = gen.get_state()
                        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
                        perp_sum = torch.zeros((), dtype=torch.float64, device=device)
                        order = _draw_permutation(n, gen, device) if shuffle else None
                    elif shuffle:  # re-draw this epoch's permutation from the epoch's starting state
                        now = gen.get_state()
                        gen.set_state(gen_epoch)
                        order = _draw_permutation(n, gen, device)
                        gen.set_state(now)
                    else:
                        order = None
                    while batch < num_batches:
                        rows = slice(batch * bsz + part.start, batch * bsz + part.stop)
                        x = data.rows(order[rows] if order is not None else rows)
                        lam = _draw_uniform(m - 1, gen, device, dtype)
                        in_step = True
                        if comm.active:
                            loss, counts, stop = _dp_step(vertices, optimizer, x, lam, bsz, comm, interrupt.raised,
                                                          chunk_size=chunk_size)
                            full = tally.add(loss.detach().clone(), counts=counts)  # not a view of the buffer
                        else:
                            loss, idx = train_step(vertices, optimizer, x, lam, chunk_size=chunk_size,
                                                   stepper=stepper)
                            full = tally.add(loss.detach(), idx=idx)
                            stop = interrupt.raised
                        if full:
                            flush()
                        batch, step = batch + 1, step + 1
                        run["steps"] += 1
                        bar.update()
                        in_step = False
                        if stop:
                            save()
                            raise KeyboardInterrupt
                        if checkpoint_every is not None and step % checkpoint_every == 0:
                            save()
                    flush()
                    stage.loss.append(unscale_sq(float(loss_sum) / num_batches, shift))
                    stage.perplexity.append(float(perp_sum) / num_batches)
                    bar.set_postfix_str(f"stage {stage_no + 1}/{len(sizes)} (M={m}) epoch {epoch + 1}/{epochs} "
                                        f"loss {stage.loss[-1]:.4g} perplexity {stage.perplexity[-1]:.4g}")
                    epoch, batch = epoch + 1, 0
                    if epoch < epochs:
                        save()
                curve = vertices.detach()
                seg = seg_counts.cpu()
                stage.segment_counts = seg
                stage.vertex_counts = torch.cat([seg, seg.new_zeros(1)]) + torch.cat([seg.new_zeros(1), seg])
                stage.final_vertices = unscale(curve).cpu().clone()
                log.stages.append(stage)
                stage_no, started = stage_no + 1, False
                save()
        except KeyboardInterrupt:
            # a step cut short may have changed the vertices or the optimizer: then the last checkpoint stands
            if path is not None and not in_step and saved_at != step:
                save()
            raise

    log.seconds = seconds_before + time.perf_counter() - t0
    log.mean_distance_sq = data.mean_distance_sq(curve, chunk_size)
    return unscale(curve), log
