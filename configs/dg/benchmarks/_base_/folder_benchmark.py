# Data loading shared by the folder benchmarks (ROOT/<domain>/<class>/<image>, nothing is
# downloaded; a missing folder is an error naming the layout). Each benchmark's base sets the
# data set in the loaders below; images are resized to 224 and ImageNet-normalised.
image_size = 224
in_chans = 3
train_dataloader = dict(
    batch_size=32, num_workers=4, persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(image_size=image_size, split_seed=0, part='train'))
val_dataloader = dict(
    batch_size=64, num_workers=4, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(image_size=image_size, split_seed=0, part='eval'))
test_dataloader = val_dataloader
val_evaluator = dict(type='DomainAccuracy')
test_evaluator = val_evaluator
