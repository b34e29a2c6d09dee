# MMD on ColoredDigits.
# MMD feature matching across domains (multi-bandwidth Gaussian kernel).
#   python tools/train.py configs/dg/mmd_colored_digits.py
# Settings beyond ERM's are those of dgsamp.models.algorithms.apply_algorithm (tests check).
_base_ = ['./erm_colored_digits.py']
model = dict(type='MMD')
# one minibatch of 32 per training domain per step (about ERM's batch of 64 in all)
train_dataloader = dict(batch_size=32, batch_sampler=dict(type='DomainBalancedBatchSampler'))
