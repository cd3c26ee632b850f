"""Hyperparameter tuning: spaces of train and model options, their samplers and pruners, and `tradeoff tune`."""
