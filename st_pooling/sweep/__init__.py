"""`st-pooling sweep`: choose a pooling head by training candidates on cached features, stopping early the ones a
learning-curve predictor says will not beat the best so far (Baker et al. 2017), with successive halving as the
baseline and training every candidate as the reference."""

from st_pooling.sweep.curves import ConfigEncoder, curve_features
from st_pooling.sweep.predictor import Curve, FinalScorePredictor, Prediction, leave_one_curve_out
from st_pooling.sweep.candidates import CandidateRun, SearchTrainer
from st_pooling.sweep.space import Candidate, SearchSpace, SearchSpaceError, load_space, space_from_dict, \
    space_from_options
from st_pooling.sweep.state import CandidateRecord, SearchState
from st_pooling.sweep.strategies import HalvingSettings, PredictiveSettings, SearchSession, check_steps, \
    rung_budgets, search_order, settings_for

__all__ = [
    "Candidate", "CandidateRecord", "CandidateRun", "ConfigEncoder", "Curve", "FinalScorePredictor",
    "HalvingSettings", "Prediction", "PredictiveSettings", "SearchSession", "SearchSpace", "SearchSpaceError",
    "SearchState", "SearchTrainer", "check_steps", "curve_features", "leave_one_curve_out", "load_space",
    "rung_budgets", "search_order", "settings_for", "space_from_dict", "space_from_options",
]
