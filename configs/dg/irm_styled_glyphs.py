# IRM on StyledGlyphs.
# IRMv1 penalty, switched on after anneal_iters updates.
#   python tools/train.py configs/dg/irm_styled_glyphs.py
# Settings beyond ERM's are those of dgsamp.models.algorithms.apply_algorithm (tests check).
_base_ = ['./erm_styled_glyphs.py']
model = dict(type='IRM', penalty_weight=100.0, anneal_iters=100)
# one minibatch of 21 per training domain per step (63 in all, about ERM's batch of 64)
train_dataloader = dict(batch_size=21, batch_sampler=dict(type='DomainBalancedBatchSampler'))
