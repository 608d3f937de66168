"""`st-pooling sweep`: choose a pooling head by training candidates on cached features, stopping early the ones a
learning-curve predictor says will not beat the best so far (Baker et al. 2017), with successive halving as the
baseline and training every candidate as the reference."""

from st_pooling.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "st_pooling.sweep.curves": ["ConfigEncoder", "curve_features"],
    "st_pooling.sweep.predictor": ["Curve", "FinalScorePredictor", "Prediction", "leave_one_curve_out"],
    "st_pooling.sweep.candidates": ["CandidateRun", "SearchTrainer"],
    "st_pooling.sweep.space": ["Candidate", "SearchSpace", "SearchSpaceError", "load_space", "space_from_dict",
                               "space_from_options"],
    "st_pooling.sweep.state": ["CandidateRecord", "SearchState"],
    "st_pooling.sweep.strategies": ["HalvingSettings", "PredictiveSettings", "SearchSession", "check_steps",
                                    "rung_budgets", "search_order", "settings_for"],
})
