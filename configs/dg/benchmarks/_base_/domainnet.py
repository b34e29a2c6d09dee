# DomainNet read from disk as released: data/domain_net/<domain>/<class>/<image>
# (nothing is downloaded; a missing folder is an error naming the layout). Train on all
# domains but the held-out one; images resized to 224 and ImageNet-normalised.
dataset_type = 'DomainNet'
data_root = 'data/domain_net'
test_domains = ['clipart']
image_size = 224
num_classes = 345
in_chans = 3

_data = dict(type=dataset_type, data_root=data_root, test_domains=test_domains,
             image_size=image_size, split_seed=0)
train_dataloader = dict(
    batch_size=32, num_workers=4, persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(**_data, part='train'))
val_dataloader = dict(
    batch_size=64, num_workers=4, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(**_data, part='eval'))
test_dataloader = val_dataloader
val_evaluator = dict(type='DomainAccuracy')
test_evaluator = val_evaluator
