# MixStyle on StyledGlyphs.
# MixStyle after layer1, layer2 and layer3 of the ResNet (every timm feature stage but the
# stem and the last: the default for timm models).
#   python tools/train.py configs/dg/mixstyle_styled_glyphs.py
# Settings beyond ERM's are those of dgsamp.models.algorithms.apply_algorithm (tests check).
_base_ = ['./erm_styled_glyphs.py']
model = dict(type='MixStyle')
