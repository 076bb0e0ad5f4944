"""Purchase intent from a trained model: the feature spec and the pure-Python scorer.

`kairos train` (intent/train.py, the `train` extra) fits the model; the server
only imports this package, which needs nothing beyond the standard library.
"""

from .features import Feature, FeatureError
from .model import FORMAT_VERSION, Model, ModelError, load, save

__all__ = ["FORMAT_VERSION", "Feature", "FeatureError", "Model", "ModelError", "load", "save"]
