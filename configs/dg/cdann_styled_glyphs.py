# CDANN on StyledGlyphs.
# Class-conditional DANN; the discriminator has its own Adam.
#   python tools/train.py configs/dg/cdann_styled_glyphs.py
# Settings beyond ERM's are those of dgsamp.models.algorithms.apply_algorithm (tests check).
_base_ = ['./dann_styled_glyphs.py']
# CDANN is DANN with a class-conditional discriminator (DomainBed: CDANN subclasses AbstractDANN):
# the same balanced batches and two Adams, only the model type differs.
model = dict(type='CDANN')
