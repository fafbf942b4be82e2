"""Matrix multiply on this machine: MLX against numpy, float32, the same square matrices.

Why the tiny-model tests and CPU steps are slow: on Linux the `mlx[cpu]` wheel's matmul calls
the BLAS it ships (`mlx_cpu.libs/libblas`, the reference implementation), while numpy's wheel
carries OpenBLAS. The table shows GFLOP/s of each and numpy / MLX. Runs alternate (MLX, numpy,
MLX, ...) and the table shows medians.

    python bench/matmul.py [--sizes 256 1024] [--repeats 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mlx.core as mx
import numpy as np

from bench.common import median, print_table


def _seconds(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rows = []
    for n in args.sizes:
        a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
        b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
        ma, mb = mx.array(a), mx.array(b)
        mx.eval(ma, mb)
        assert np.allclose(np.array(ma @ mb), a @ b, rtol=1e-3, atol=1e-2)
        mlx_run, np_run = (lambda: mx.eval(ma @ mb)), (lambda: a @ b)  # noqa: B023
        mlx_run(), np_run()  # warm-up
        mlx_times, np_times = [], []
        for _ in range(args.repeats):
            mlx_times.append(_seconds(mlx_run))
            np_times.append(_seconds(np_run))
        flop = 2 * n**3
        mlx_s, np_s = median(mlx_times), median(np_times)
        rows.append([
            f"{n}x{n}x{n}", f"{mlx_s * 1e3:.2f}", f"{flop / mlx_s / 1e9:.1f}",
            f"{np_s * 1e3:.2f}", f"{flop / np_s / 1e9:.1f}", f"{mlx_s / np_s:.1f}x",
        ])  # fmt: skip
    device = mx.default_device()
    print_table(
        f"float32 matmul, MLX {mx.__version__} on {device} against numpy {np.__version__}",
        ["shape", "MLX ms", "MLX GFLOP/s", "numpy ms", "numpy GFLOP/s", "numpy speed-up"],
        rows,
    )


if __name__ == "__main__":
    main()
