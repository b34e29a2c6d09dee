"""Per-domain metrics, model selection and result tables."""

from .domain_accuracy import DomainAccuracy
from .domain_metric import DomainMetric
from .stats import MeanSE, mean_se, paired_difference

__all__ = ["DomainAccuracy", "DomainMetric", "MeanSE", "mean_se", "paired_difference"]
