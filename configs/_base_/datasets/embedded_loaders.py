# Loaders shared by the embedded digits benchmarks; each benchmark's base sets the data set.
# Evaluation reports every domain: training domains on their 20% held-out part, the test
# domain on all of it (DomainBed's protocol).
train_dataloader = dict(
    batch_size=32, num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(part='train'))
val_dataloader = dict(
    batch_size=256, num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(part='eval'))
test_dataloader = val_dataloader
val_evaluator = dict(type='DomainAccuracy')
test_evaluator = val_evaluator
