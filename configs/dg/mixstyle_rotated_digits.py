# MixStyle on RotatedDigits.
# MixStyle after the first three conv blocks of digits_cnn.
#   python tools/train.py configs/dg/mixstyle_rotated_digits.py
# Settings beyond ERM's are those of dgsamp.models.algorithms.apply_algorithm (tests check).
_base_ = ['./erm_rotated_digits.py']
model = dict(type='MixStyle')
