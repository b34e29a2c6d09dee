# CORAL on RotatedDigits.
# Deep CORAL: match feature means and covariances across domains.
#   python tools/train.py configs/dg/coral_rotated_digits.py
# Settings beyond ERM's are those of dgsamp.models.algorithms.apply_algorithm (tests check).
_base_ = ['./erm_rotated_digits.py']
model = dict(type='CORAL')
# one minibatch of 6 per training domain per step (about ERM's batch of 32 in all)
train_dataloader = dict(batch_size=6, batch_sampler=dict(type='DomainBalancedBatchSampler'))
