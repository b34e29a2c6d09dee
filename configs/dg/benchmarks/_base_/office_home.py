# OfficeHome read from disk as released: data/office_home/<domain>/<class>/<image>
# (nothing is downloaded; a missing folder is an error naming the layout). Train on all
# domains but the held-out one; images resized to 224 and ImageNet-normalised.
dataset_type = 'OfficeHome'
data_root = 'data/office_home'
test_domains = ['Art']
image_size = 224
num_classes = 65
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
