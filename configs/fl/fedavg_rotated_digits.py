# Federated DG on RotatedDigits: each of the five training domains (0..60 degrees) is one client,
# the 75-degree domain is held out (no client has it). FedAvg, 20 rounds of 1 local epoch.
#   python tools/train_fl.py configs/fl/fedavg_rotated_digits.py
# The model, data pipeline, optimizer and hooks are the centralized job's
# (configs/dg/erm_rotated_digits.py); param_scheduler reads over rounds x local_epochs epochs.
_base_ = ['../dg/erm_rotated_digits.py']
param_scheduler = [dict(type='MultiStepLR', by_epoch=True, milestones=[16], gamma=0.1)]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=20)
default_hooks = dict(logger=dict(type='LoggerHook', interval=50))
fl = dict(num_rounds=20, local_epochs=1, clients='domains', fraction_train=1.0,
          strategy=dict(type='FedAvg'))
