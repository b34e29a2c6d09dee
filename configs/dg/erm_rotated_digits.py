# The main job: ERM with a timm model on RotatedDigits, domain 75 held out.
#   python tools/train.py configs/dg/erm_rotated_digits.py
# Any timm model works: --cfg-options model.model_name=resnet18  (CNN or ViT; ViTs need
# model.model_kwargs.img_size=28 and a patch size that divides it).
_base_ = [
    '../_base_/datasets/rotated_digits.py',
    '../_base_/schedules/adam_30e.py',
    '../_base_/default_runtime.py',
]
model = dict(type='ERM', model_name='digits_cnn', num_classes={{_base_.num_classes}},
             in_chans={{_base_.in_chans}})
