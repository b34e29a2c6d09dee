# The centralized baseline of the federated runs: ERM on all five training domains for the same
# total number of epochs (20 = 20 rounds x 1 local epoch, LR x0.1 after 16), with CostHook.
#   python tools/train.py configs/fl/erm_central_rotated_digits.py
_base_ = ['./fedavg_rotated_digits.py']
custom_hooks = [dict(type='CostHook')]
