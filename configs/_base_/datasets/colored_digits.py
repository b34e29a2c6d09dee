# ColoredDigits (embedded, 3 domains '+90%', '+80%', '-90%'; DomainBed's ColoredMNIST on
# sklearn's digits): label = digit < 5 with 25% label noise, colour agrees with the label 90%,
# 80% and 10% of the time. Train on two, test on the held-out one; the colour shortcut makes
# '-90%' the hard domain for ERM.
_base_ = ['./embedded_loaders.py']
test_domains = ['-90%']
dataset_type = 'ColoredDigits'
data_seed = 0
image_size = 14
num_classes = 2
in_chans = 2
num_domains = 3

_data = dict(type=dataset_type, test_domains=test_domains, seed=data_seed,
             image_size=image_size, split_seed=0)
train_dataloader = dict(batch_size=64, dataset=_data)
val_dataloader = dict(dataset=_data)
test_dataloader = val_dataloader
