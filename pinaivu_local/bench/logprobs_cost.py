"""What reporting logprobs costs per generated token, on a Llama-3-sized vocabulary (128,256 logits).

Not a test (pytest does not collect it). Run from the repository root:

    python -m pinaivu_local.bench.logprobs_cost [--vocab N] [--runs N]

Times `token_logprob` (the normalizer over the whole vocabulary, then the top candidates) for
top_logprobs 0, 5 and 20, with and without a logit_bias; medians of --runs calls. Requests that do
not ask for logprobs never call it.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from pinaivu_local.engine.logprobs import token_logprob


def main() -> None:
    """Print the median cost per token of each case, in milliseconds."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--vocab", type=int, default=128256)
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args()
    logits = np.random.default_rng(0).standard_normal(args.vocab).astype(np.float32)
    for n_top in (0, 5, 20):
        for bias in ({}, {5: 1.0, 9: -100.0}):
            times = []
            for _ in range(args.runs):
                start = time.perf_counter()
                token_logprob(logits, bias, 7, n_top, lambda t: (str(t), b"x"))
                times.append(time.perf_counter() - start)
            label = "with logit_bias" if bias else "no logit_bias"
            print(f"top_logprobs {n_top:2d}, {label:15s}: {statistics.median(times) * 1e3:.2f} ms per token")


if __name__ == "__main__":
    main()
