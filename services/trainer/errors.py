"""The trainer's one error type: a run that cannot start or go on, with a message that says why."""

from __future__ import annotations


class TrainingError(RuntimeError):
    """A training run that cannot start: bad config, too little data, unknown algorithm."""
