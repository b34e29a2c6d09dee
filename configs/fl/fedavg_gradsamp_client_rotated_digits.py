# GradSamp client mode: every client runs GradSampHook inside its rounds of 4 local epochs
# (epochs 2, 6, 10, ... of the schedule are sampled, not trained). 5 rounds x 4 epochs.
_base_ = ['./fedavg_rotated_digits.py']
param_scheduler = [dict(type='MultiStepLR', by_epoch=True, milestones=[16], gamma=0.1)]
fl = dict(num_rounds=5, local_epochs=4, gradsamp=dict(mode='client', every=4, warmup=2))
