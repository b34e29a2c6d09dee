"""dgsamp: train vision models under distribution shift at a fraction of the energy.

`import dgsamp` registers every dgsamp model, data set, metric, hook and loop into mmengine's
root registries. mmdet's and mmseg's registries are children of those and search their parents,
so ``custom_imports = dict(imports=['dgsamp'], allow_failed_imports=False)`` is all a config
needs. The methods (`dgsamp.methods`) are plain PyTorch: without mmengine installed,
`import dgsamp.methods` still works and only the registrations are skipped.
"""

__version__ = "0.1.0"

try:
    import mmengine  # noqa: F401
except ImportError:  # plain-PyTorch use of dgsamp.methods
    pass
else:
    from . import cost, datasets, detseg, engine, evaluation, models  # noqa: F401  (registration)
