"""The yardstick: this machine's measured matmul peak per dtype, and FLOPs counted per stage.

Every speed figure of the bench is read against these, measured in the same run:

- `matmul_peak`: GFLOP/s of a square matmul (2048 by default) per dtype on the bench's device, at the
  bench's thread count and, on a CPU, also at one thread (`parallel_efficiency`: a 2-core machine whose
  2-thread peak is not well above its 1-thread peak is shared with other jobs, and every figure of
  that run is below the machine's limit).
- `count_flops`: the FLOPs of one call, counted by `torch.utils.flop_counter.FlopCounterMode` (matmuls,
  convolutions, attention), never estimated. torch 2.13's counter has no formula for the CPU flash
  attention kernel (`aten._scaled_dot_product_flash_attention_for_cpu`, what SDPA runs on a CPU), so
  every SDPA call on a CPU would count 0 FLOPs (SAM ViT-B's encoder: 742 GFLOP counted without its
  ~230 GFLOP of global/windowed attention); `FLOP_FORMULAS` adds it, with the same formula torch uses
  for the GPU flash kernel.
- `fraction_of_peak`: counted FLOPs / median seconds / peak of the stage's dtype.
"""
from __future__ import annotations

import os
import statistics
import time

import torch

aten = torch.ops.aten


def _sdpa_cpu_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _sdpa_cpu_backward_flops(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None,
                             **kwargs) -> int:
    from torch.utils.flop_counter import sdpa_backward_flop_count

    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


def _flop_formulas() -> dict:
    table = {}
    fwd = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    bwd = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None)
    if fwd is not None:
        table[fwd] = _sdpa_cpu_flops
    if bwd is not None:
        table[bwd] = _sdpa_cpu_backward_flops
    return table


#: formulas torch's FlopCounterMode lacks (CPU flash attention, forward and backward)
FLOP_FORMULAS = _flop_formulas()


def flop_counter(depth: int = 2):
    """A `FlopCounterMode` that also counts CPU SDPA (see the module docstring)."""
    from torch.utils.flop_counter import FlopCounterMode

    return FlopCounterMode(display=False, depth=depth, custom_mapping=FLOP_FORMULAS)


def count_flops(fn, *args, **kwargs) -> tuple[int, object]:
    """(FLOPs of one ``fn(*args, **kwargs)`` call, its return value)."""
    with flop_counter() as fc:
        out = fn(*args, **kwargs)
    return int(fc.get_total_flops()), out


def module_flops(counter) -> dict[str, int]:
    """FLOPs per module name of a finished `flop_counter` (e.g. 'Sam2VideoModel.memory_attention')."""
    return {k: int(sum(v.values())) for k, v in counter.get_flop_counts().items()}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(dtype: torch.dtype, device: torch.device, n: int = 2048, reps: int = 5,
                max_seconds: float = 3.0, probe: int = 256) -> dict:
    """GFLOP/s of an n x n matmul in `dtype` on `device` (best of `reps`, after one warm-up).

    A dtype the device emulates (fp16 on most CPUs) can be hundreds of times slower, and slower than
    cubic in the size (on this project's CPU one fp16 product takes ~0.1 s at 512^2, ~2 s at 1024^2,
    ~40 s at 2048^2). So the size grows from `probe`, doubling while the next product is predicted
    (8x the last one) to take under half a second, up to `n`: a native dtype reaches `n` after a few
    milliseconds of small products (even on a loaded machine), an emulated one stops small. The
    repetitions stop once `max_seconds` are spent.
    """
    g = torch.Generator(device="cpu").manual_seed(0)

    def operands(size):
        a = torch.randn(size, size, generator=g).to(device=device, dtype=dtype)
        b = torch.randn(size, size, generator=g).to(device=device, dtype=dtype)
        return a, b

    def timed(a, b) -> float:
        _sync(device)
        t0 = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        return time.perf_counter() - t0

    size = min(probe, n)
    a, b = operands(size)
    timed(a, b)  # warm-up: library initialisation, thread pool
    first = timed(a, b)
    while size < n and 8 * first < 0.5:
        size = min(2 * size, n)
        a, b = operands(size)
        first = timed(a, b)
    best = first
    spent = first
    for _ in range(reps):
        if spent > max_seconds:
            break
        dt = timed(a, b)
        spent += dt
        best = min(best, dt)
    return {"gflops": 2.0 * size**3 / best / 1e9, "size": size, "threads": torch.get_num_threads()}


def machine_limits(device: torch.device, dtypes=(torch.float32, torch.bfloat16, torch.float16)) -> dict:
    """Peaks per dtype ('fp32', 'bf16', 'fp16') at the current thread count; on a CPU with more than one
    thread also the fp32 peak at one thread and the parallel efficiency (N-thread peak / (N x 1-thread))."""
    from ..models.loading import dtype_name

    peaks = {dtype_name(dt): matmul_peak(dt, device) for dt in dtypes}
    out: dict = {"matmul_peak": peaks}
    threads = torch.get_num_threads()
    if device.type == "cpu" and threads > 1:
        torch.set_num_threads(1)
        try:
            one = matmul_peak(torch.float32, device)
        finally:
            torch.set_num_threads(threads)
        out["fp32_one_thread_gflops"] = one["gflops"]
        out["parallel_efficiency"] = peaks["fp32"]["gflops"] / (threads * one["gflops"])
    return out


def fraction_of_peak(flops: int, seconds: float, peak_gflops: float) -> float | None:
    if not flops or seconds <= 0 or peak_gflops <= 0:
        return None
    return flops / seconds / 1e9 / peak_gflops


def shared_machine_note(limits: dict, load_start, cpu_count: int | None) -> str | None:
    """Why this run's figures may sit below the machine's limit (other jobs on the cores), or None."""
    eff = limits.get("parallel_efficiency")
    notes = []
    if eff is not None and eff < 0.75:
        notes.append(f"matmul parallel efficiency {eff:.2f} (< 0.75: the cores are shared)")
    if load_start and cpu_count and load_start[0] > 0.5 * cpu_count:
        notes.append(f"1-min load average {load_start[0]:.2f} on {cpu_count} CPUs at the start")
    return "; ".join(notes) or None


def stats(xs: list[float]) -> dict:
    return {"median_ms": 1000 * statistics.median(xs), "min_ms": 1000 * min(xs), "max_ms": 1000 * max(xs),
            "n": len(xs)}


def cpu_description() -> dict:
    """CPU model name, logical CPUs usable by this process and the precision flags that matter."""
    from ..models.loading import cpu_flags, cpu_native_bf16, cpu_native_fp16

    name = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    flags = cpu_flags()
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    return {"model": name, "usable_cpus": usable, "torch_capability": torch.backends.cpu.get_cpu_capability(),
            "native_bf16": cpu_native_bf16(), "native_fp16": cpu_native_fp16(),
            "flags": sorted(f for f in flags if f in ("avx2", "avx512f", "avx512_bf16", "avx512_fp16",
                                                       "amx_tile", "amx_bf16", "amx_fp16", "asimdhp", "bf16"))}
