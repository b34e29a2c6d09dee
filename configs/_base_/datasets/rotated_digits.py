# RotatedDigits (embedded, 6 domains '0'...'75'): train on five, test on the held-out one.
# Evaluation reports every domain: training domains on their 20% held-out part, the test
# domain on all of it (DomainBed's protocol).
_base_ = ['./embedded_loaders.py']
test_domains = ['75']
dataset_type = 'RotatedDigits'
data_seed = 0          # which shuffle of the digits builds the domains
image_size = 16     # the digits are 8x8 (12x12 padded): 16 px is plenty
num_classes = 10
in_chans = 1

_data = dict(type=dataset_type, test_domains=test_domains, seed=data_seed,
             image_size=image_size, split_seed=0)
train_dataloader = dict(dataset=_data)
val_dataloader = dict(dataset=_data)
test_dataloader = val_dataloader
