"""Multi-domain data: embedded benchmarks, folder benchmarks, domain-aware sampling."""

from .benchmarks import ColoredDigits, DGBenchmark, RotatedDigits
from .folder import PACS, VLCS, DomainFolders, DomainNet, OfficeHome, TerraIncognita
from .multidomain import Domain, DomainSplitDataset, split_indices

__all__ = ["PACS", "VLCS", "ColoredDigits", "DGBenchmark", "Domain", "DomainFolders",
           "DomainNet", "DomainSplitDataset", "OfficeHome", "RotatedDigits", "TerraIncognita",
           "split_indices"]
