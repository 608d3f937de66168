"""``st-pooling tune``: train a head on a multi-task mixture, keep it only if it is never worse than the native
pooling on any task type's dev split, and test it against the native pooling (see docs/tuning.md).

Modules: :mod:`~st_pooling.tuning.data` (splits, mixture, dev suite, test tasks), :mod:`~st_pooling.tuning.mixture`
(the search's trainer on the mixture, with the never-worse rule), :mod:`~st_pooling.tuning.tune` (``run_tune``),
:mod:`~st_pooling.tuning.cli` (the command; imported by ``st-pooling`` at start-up, so this package imports nothing
heavy itself).
"""
