"""Species distribution modelling: data sets, training, evaluation, baselines, conformal thresholds."""
