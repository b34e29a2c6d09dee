# TerraIncognita read from disk as released: data/terra_incognita/<domain>/<class>/<image>
_base_ = ['./folder_benchmark.py']
dataset_type = 'TerraIncognita'
data_root = 'data/terra_incognita'
test_domains = ['location_100']
num_classes = 10

_data = dict(type=dataset_type, data_root=data_root, test_domains=test_domains)
train_dataloader = dict(dataset=_data)
val_dataloader = dict(dataset=_data)
test_dataloader = val_dataloader
