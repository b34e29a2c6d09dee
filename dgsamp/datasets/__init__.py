"""Multi-domain data: embedded benchmarks, folder benchmarks, domain-aware sampling."""

from .benchmarks import ColoredDigits, DGBenchmark, RotatedDigits, StyledGlyphs
from .folder import PACS, VLCS, DomainFolders, DomainNet, OfficeHome, TerraIncognita
from .multidomain import Domain, DomainSplitDataset, split_indices
from .samplers import UNLABELED, DomainBalancedBatchSampler, SourceTargetDataset

__all__ = ["PACS", "UNLABELED", "VLCS", "ColoredDigits", "DGBenchmark", "Domain",
           "DomainBalancedBatchSampler", "DomainFolders", "DomainNet", "DomainSplitDataset",
           "OfficeHome", "RotatedDigits", "SourceTargetDataset", "StyledGlyphs", "TerraIncognita",
           "split_indices"]
