"""`st-pooling train`: train a pooling head (or the whole model) from the command line."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict

from st_pooling.cli_args import add_base_flag, add_progress_flag, fraction, positive_float, positive_int


def add_train_command(subparsers: argparse._SubParsersAction) -> None:
    """Register ``st-pooling train`` on the main parser's subparsers."""
    parser = subparsers.add_parser(
        "train", help="train a pooling head (base frozen), the whole model, or LoRA adapters + head",
        description="Train with sentence-transformers' trainer and standard losses (MultipleNegativesRankingLoss for "
                    "pairs/triplets, CoSENT or AnglE for scored pairs), or on cached features of the frozen base "
                    "(--fast-path). The output folder is written only when training succeeded and loads with "
                    "SentenceTransformer(path) after `import st_pooling`. Under torchrun or accelerate launch every "
                    "mode is data-parallel: --batch-size is then the global batch, split across the processes "
                    "(see docs/distributed.md).")
    what = parser.add_argument_group("what to train")
    what.add_argument("--recipe", default=None, help="a ready design (see --list-recipes); sets model, pooling, "
                      "attention mode and mode")
    add_base_flag(what)
    what.add_argument("--pooling", default="latent_attention",
                      help="pooling spec, e.g. gem, weighted_sum:exclude_first_token=true, mltp:layer_summary=mean")
    what.add_argument("--mode", choices=["head", "full", "lora"], default=None,
                      help="head: base frozen (default); full: everything; lora: LoRA adapters + head (needs peft)")
    what.add_argument("--attention-mode", choices=["causal", "bidirectional"], default=None,
                      help="decoder base models only")
    what.add_argument("--max-seq-length", type=positive_int, default=128)
    what.add_argument("--no-native-start", dest="native_start", action="store_false",
                      help="start a learnable head from its own initialisation (random latents, GeM at p=3, ...) "
                           "instead of as exactly the base's own pooling (the default; a spec option native=NAME "
                           "chooses another parameter-free pooling)")
    data = parser.add_argument_group("data")
    data.add_argument("--train", default="stsb", help="stsb, sick, sick-nli, banking77, 20newsgroups (name:split "
                      "picks a split) or a .jsonl/.csv/.tsv of (anchor, positive[, negative]) or (text1, text2, score)")
    data.add_argument("--dev", default=None, help="dev set, same forms as --train (e.g. stsb:dev); evaluated after "
                      "every epoch, the best epoch is kept")
    data.add_argument("--data-dir", default=None, help="folder holding stsbenchmark/, sick/, ... (default: "
                      "$ST_POOLING_DATA_DIR, else ../shared/data next to the source tree)")
    data.add_argument("--max-train", type=positive_int, default=None, help="train on a seeded subset of this many rows")
    how = parser.add_argument_group("how")
    how.add_argument("--loss", choices=["mnrl", "cosent", "angle"], default=None,
                     help="default: mnrl for pairs/triplets, cosent for scored pairs")
    how.add_argument("--epochs", type=positive_int, default=1)
    how.add_argument("--batch-size", type=positive_int, default=32)
    how.add_argument("--lr", type=positive_float, default=None, help="learning rate (default: head 1e-3, full 2e-5, lora 1e-4)")
    how.add_argument("--head-lr", type=positive_float, default=1e-3, help="the head's rate in full / lora modes")
    how.add_argument("--warmup-ratio", type=fraction, default=0.0)
    how.add_argument("--seed", type=int, default=0)
    how.add_argument("--patience", type=positive_int, default=None, help="early stopping: epochs without dev improvement")
    how.add_argument("--fast-path", action=argparse.BooleanOptionalAction, default=None,
                     help="head mode: train on cached features of the frozen base (default: on for a head-only "
                          "--recipe, off otherwise)")
    how.add_argument("--cache-dtype", choices=["float16", "float32"], default="float16")
    how.add_argument("--cache-max-gib", type=positive_float, default=4.0, help="memory budget of the feature cache")
    parser.add_argument("--output", required=False, default=None, help="folder for the trained model")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    add_progress_flag(parser)
    parser.add_argument("--list-recipes", action="store_true", help="print the ready designs and exit")
    parser.set_defaults(handler=run_train)


def run_train(args: argparse.Namespace) -> int:
    from st_pooling.modules.spec import PoolingSpec
    from st_pooling.models import build_model, with_native_start
    from st_pooling.training.data import load_training_data
    from st_pooling.training.distributed import current_ranks
    from st_pooling.training.recipes import RECIPES, get_recipe
    from st_pooling.training.trainer import TrainConfig, train_model

    if args.list_recipes:
        for name, recipe in RECIPES.items():
            print(f"{name:<26} {recipe.base:<8} {recipe.pooling:<17} {recipe.mode:<5} {recipe.description}")
        return 0
    if not args.output:
        raise ValueError("--output is required: the folder the trained model is written to")
    train = load_training_data(args.train, data_dir=args.data_dir)
    if args.max_train:
        train = train.subset(args.max_train, seed=args.seed)
    dev = load_training_data(args.dev, data_dir=args.data_dir, split="dev") if args.dev else None
    if args.recipe:
        recipe = get_recipe(args.recipe)
        options = with_native_start(recipe.base, recipe.pooling, recipe.options) if args.native_start else {}
        model = recipe.build(max_seq_length=args.max_seq_length, **options)
        mode = args.mode or recipe.mode
        fast_path = recipe.config(mode=mode).fast_path if args.fast_path is None else args.fast_path
    else:
        spec = PoolingSpec.parse(args.pooling)
        options = with_native_start(args.base, spec.pooling, spec.options) if args.native_start else dict(spec.options)
        model = build_model(args.base, spec.pooling, max_seq_length=args.max_seq_length,
                            attention_mode=args.attention_mode, **dict(options))
        mode = args.mode or "head"
        fast_path = bool(args.fast_path)
    config = TrainConfig(mode=mode, loss=args.loss, epochs=args.epochs, batch_size=args.batch_size,
                         learning_rate=args.lr, head_learning_rate=args.head_lr, warmup_ratio=args.warmup_ratio,
                         seed=args.seed, early_stopping_patience=args.patience, fast_path=fast_path,
                         cache_dtype=args.cache_dtype, cache_max_bytes=int(args.cache_max_gib * 1024**3),
                         show_progress_bar=not args.no_progress, overwrite=args.overwrite)
    started = time.perf_counter()
    result = train_model(model, train, args.output, dev=dev, config=config)
    if not current_ranks().is_main:  # under torchrun / accelerate launch the main process reports
        return 0
    for record in result.history:
        print(json.dumps(asdict(record)))
    best = "" if result.best_epoch is None else \
        f"; best epoch {result.best_epoch} ({result.dev_metric} {result.best_dev_score:.4f})"
    print(f"trained {len(train)} {train.kind} in {time.perf_counter() - started:.0f} s{best}; "
          f"saved to {result.output_dir}")
    return 0
