"""Native Reasoning Training: teach a causal LM to think before it answers, from question-answer pairs."""

from nrt.config import ConfigError, TrainConfig, load_config, preset_names
from nrt.data import DataError, Example, load_examples
from nrt.modeling import load_policy
from nrt.rewards import AGGREGATIONS, aggregate
from nrt.trainer import TrainResult, train

__version__ = "0.1.0"

__all__ = ["AGGREGATIONS", "ConfigError", "DataError", "Example", "TrainConfig", "TrainResult", "aggregate",
           "load_config", "load_examples", "load_policy", "preset_names", "train"]
