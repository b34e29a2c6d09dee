# Mixup on RotatedDigits.
# DomainBed's inter-domain Mixup.
#   python tools/train.py configs/dg/mixup_rotated_digits.py
# Settings beyond ERM's are those of dgsamp.models.algorithms.apply_algorithm (tests check).
_base_ = ['./erm_rotated_digits.py']
model = dict(type='Mixup')
# one minibatch of 6 per training domain per step (about ERM's batch of 32 in all)
train_dataloader = dict(batch_size=6, batch_sampler=dict(type='DomainBalancedBatchSampler'))
