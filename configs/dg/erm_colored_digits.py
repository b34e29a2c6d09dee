# ERM on ColoredDigits, domain '-90%' held out.
#   python tools/train.py configs/dg/erm_colored_digits.py
_base_ = [
    '../_base_/datasets/colored_digits.py',
    '../_base_/schedules/adam_30e.py',
    '../_base_/default_runtime.py',
]
model = dict(type='ERM', model_name='digits_cnn', num_classes={{_base_.num_classes}},
             in_chans={{_base_.in_chans}})
