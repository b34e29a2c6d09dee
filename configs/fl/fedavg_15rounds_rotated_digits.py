# The equal-cost dense baseline of GradSamp server mode (every=4 over 20 rounds trains 15 of
# them): plain FedAvg for 15 rounds, the same client FLOPs and bytes; LR x0.1 after 12 (16/20).
_base_ = ['./fedavg_rotated_digits.py']
param_scheduler = [dict(type='MultiStepLR', by_epoch=True, milestones=[12], gamma=0.1)]
fl = dict(num_rounds=15)
