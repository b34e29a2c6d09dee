# the frontier's dither_s0 run config (tools/frontier.py config_text for resnet, cartoon, seed 0),
# with only the SparseBackwardHook changed
_base_ = ['work_dirs/frontier_v2/resnet/cartoon/dither_s0/config.py']
custom_hooks = [
    dict(type='SparseBackwardHook', method='dither', scale=2.0),
    dict(type='CostHook')]
