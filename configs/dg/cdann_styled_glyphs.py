# CDANN on StyledGlyphs.
# Class-conditional DANN; the discriminator has its own Adam.
#   python tools/train.py configs/dg/cdann_styled_glyphs.py
# Settings beyond ERM's are those of dgsamp.models.algorithms.apply_algorithm (tests check).
_base_ = ['./erm_styled_glyphs.py']
model = dict(type='CDANN', num_domains=4)
# one minibatch of 21 per training domain per step (63 in all, about ERM's batch of 64)
train_dataloader = dict(batch_size=21, batch_sampler=dict(type='DomainBalancedBatchSampler'))
# DomainBed's two Adams (AbstractDANN): betas (beta1=0.5, 0.9) for featurizer+classifier and
# discriminator alike; the discriminator's weight_decay is DomainBed's weight_decay_d (0)
_adam = dict(type='OptimWrapper', optimizer=dict(
    type='Adam', lr={{_base_.optim_wrapper.optimizer.lr}},
    weight_decay={{_base_.optim_wrapper.optimizer.weight_decay}}, betas=(0.5, 0.9)))
optim_wrapper = dict(_delete_=True, constructor='PerModuleOptimWrapperConstructor',
                     model=_adam, discriminator=_adam)
