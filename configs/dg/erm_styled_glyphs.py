# ERM on StyledGlyphs, domain 'sketch' held out, with a narrow timm ResNet-10-T (channels
# 32-64-128-256, stem width 16, 1.2 M parameters; no pretrained weights): one dense run of the
# schedule below takes about 2 minutes of one CPU core (docs/results/frontier_benchmark_resnet.md).
#   python tools/train.py configs/dg/erm_styled_glyphs.py
# Other held-out domains: --cfg-options "train_dataloader.dataset.test_domains=['photo']"
# "val_dataloader.dataset.test_domains=['photo']" (tools/frontier.py --test-domains does this).
# The ViT backbone of the frontier study: configs/dg/erm_styled_glyphs_vit.py.
_base_ = [
    '../_base_/datasets/styled_glyphs.py',
    '../_base_/schedules/adam_30e.py',
    '../_base_/default_runtime.py',
]
model = dict(type='ERM', model_name='resnet10t', num_classes={{_base_.num_classes}},
             in_chans={{_base_.in_chans}},
             model_kwargs=dict(channels=(32, 64, 128, 256), stem_width=16))
# 8 epochs of 113 steps (batch 64), lr x0.1 for the last 2: the frontier tool compresses this
# schedule for its shorter budgets.
train_cfg = dict(max_epochs=8, val_interval=8)
param_scheduler = [dict(type='MultiStepLR', by_epoch=True, milestones=[6], gamma=0.1)]
default_hooks = dict(checkpoint=dict(interval=8))
