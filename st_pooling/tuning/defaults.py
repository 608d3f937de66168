"""The defaults of ``st-pooling tune`` (kept free of heavy imports: the command line reads them at start-up)."""

DEFAULT_HEADS = ("weighted_sum", "gem", "latent_attention")
DEFAULT_LRS = (1e-3, 3e-3)
DEFAULT_STEPS = 400
DEFAULT_EVAL_EVERY = 50
DEFAULT_MAX_TRAIN = 500
DEFAULT_MAX_DEV = 300
DEFAULT_MAX_ITEMS = 500
DEFAULT_IR_DISTRACTORS = 300
DEFAULT_MAX_SEQ_LENGTH = 128

DEFAULT_WEIGHTS: dict[str, float] = {
    "stsb": 1.0, "sick": 1.0, "sick-nli": 0.5,
    "banking77": 1.0, "sst2": 0.5, "20newsgroups": 1.0,
    "cranfield": 1.0, "cisi": 0.5,
}
"""Per-source sampling weights: each training batch comes from one source, drawn proportionally to its weight."""
