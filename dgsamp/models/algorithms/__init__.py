"""DG/DA algorithms, each a small mmengine model over the shared timm featurizer/classifier.

ERM is `DomainClassifier` itself; the others subclass it (`DGAlgorithm`) and override `loss`
(and `train_step` where they own optimizers or reset them). Importing this package registers
them all in mmengine's root MODELS registry, plus `PerModuleOptimWrapperConstructor` for
algorithms with a separate discriminator optimizer.
"""

from ..classifier import DomainClassifier as ERM
from .adversarial import CDANN, DANN, DomainDiscriminator, grad_reverse
from .alignment import CORAL, MMD, coral_distance, mmd_distance
from .base import DGAlgorithm, domain_groups
from .groupdro import GroupDRO
from .hparams import draw_hparams
from .invariance import IRM, VREx
from .mixstyle import MixStyle, MixStyleLayer
from .mixup import Mixup
from .optim import PerModuleOptimWrapperConstructor
from .presets import apply_algorithm

ALGORITHMS = ["ERM", "DANN", "CDANN", "CORAL", "MMD", "MixStyle", "IRM", "VREx", "GroupDRO",
              "Mixup"]

__all__ = ["ALGORITHMS", "CDANN", "CORAL", "DANN", "ERM", "IRM", "MMD", "DGAlgorithm",
           "DomainDiscriminator", "GroupDRO", "MixStyle", "MixStyleLayer", "Mixup",
           "PerModuleOptimWrapperConstructor", "VREx", "apply_algorithm", "coral_distance",
           "domain_groups",
           "draw_hparams", "grad_reverse", "mmd_distance"]
