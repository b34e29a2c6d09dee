"""mmengine adapters: hooks, loops, checkpoint compatibility, config checks."""

from . import checkpoint_compat  # noqa: F401  (allow-lists mmengine checkpoint classes)
from .config_check import check_config

__all__ = ["check_config"]
