"""The world model: encoders, action-conditioned predictor, JEPA objective, baselines, bands.

Public entry points (what the live worker calls) are in :mod:`twin.model.api`.
"""
