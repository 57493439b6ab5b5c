"""Training runs: a problem's model trained with each estimator, with learning curves."""
