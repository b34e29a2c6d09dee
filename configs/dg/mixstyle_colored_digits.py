# MixStyle on ColoredDigits.
# MixStyle after the first three conv blocks of digits_cnn.
#   python tools/train.py configs/dg/mixstyle_colored_digits.py
# Settings beyond ERM's are those of dgsamp.models.algorithms.apply_algorithm (tests check).
_base_ = ['./erm_colored_digits.py']
model = dict(type='MixStyle')
