"""Per-domain metrics, model selection and result tables."""

from .domain_accuracy import DomainAccuracy

__all__ = ["DomainAccuracy"]
