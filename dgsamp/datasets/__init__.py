"""Multi-domain data: embedded benchmarks, folder benchmarks, domain-aware sampling."""

from .benchmarks import ColoredDigits, DGBenchmark, RotatedDigits
from .multidomain import Domain, DomainSplitDataset, split_indices

__all__ = ["ColoredDigits", "DGBenchmark", "Domain", "DomainSplitDataset", "RotatedDigits",
           "split_indices"]
