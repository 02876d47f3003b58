"""How fast one SAM2 memory cross-attention runs on this CPU, in float32 and bfloat16.

Bounds the per-interaction gain of `sam2`'s feature cache: with the image features cached, the
tracking step's memory attention (a frame's (S/16)² tokens attending to 7 memory frames of as
many tokens plus object pointers) is what remains, and it is plain arithmetic.

    OMP_NUM_THREADS=1 python benchmarks/bench_sam2_attention.py --threads 1
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

MEMORY_FRAMES = 7  # num_maskmem of the SAM 2.1 configurations
POINTER_TOKENS = 64  # 16 object pointers of 256 channels split into 4 tokens of 64, as SAM2 does
CHANNELS = 256


def seconds(queries: int, keys: int, dtype: torch.dtype, repeats: int) -> float:
    q = torch.randn(1, 1, queries, CHANNELS, dtype=dtype)
    k, v = (torch.randn(1, 1, keys, CHANNELS, dtype=dtype) for _ in range(2))
    F.scaled_dot_product_attention(q, k, v)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        F.scaled_dot_product_attention(q, k, v)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--image-size", type=int, nargs="+", default=[256, 512, 1024])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print("| image size | tokens / memory tokens | dtype | one cross-attention (s) | GFLOP/s |")
    print("|---|---:|---|---:|---:|")
    for size in args.image_size:
        tokens = (size // 16) ** 2
        keys = MEMORY_FRAMES * tokens + POINTER_TOKENS
        for dtype in (torch.float32, torch.bfloat16):
            took = seconds(tokens, keys, dtype, args.repeats)
            flops = 4 * tokens * keys * CHANNELS  # QK^T and AV, a multiply-add each
            print(f"| {size}² | {tokens} / {keys} | {str(dtype).removeprefix('torch.')} | {took:.3f} | {flops / took / 1e9:.0f} |")


if __name__ == "__main__":
    main()
