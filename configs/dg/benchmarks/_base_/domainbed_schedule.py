# DomainBed's image schedule: Adam lr 5e-5, no weight decay, iteration-based, validation every
# 300 steps (each validation is a model-selection record). DomainNet runs 3x longer.
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=5e-5, weight_decay=0.0))
param_scheduler = []
train_cfg = dict(type='IterBasedTrainLoop', max_iters=5000, val_interval=300)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
