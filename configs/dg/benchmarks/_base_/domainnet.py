# DomainNet read from disk as released: data/domain_net/<domain>/<class>/<image>
_base_ = ['./folder_benchmark.py']
dataset_type = 'DomainNet'
data_root = 'data/domain_net'
test_domains = ['clipart']
num_classes = 345

_data = dict(type=dataset_type, data_root=data_root, test_domains=test_domains)
train_dataloader = dict(dataset=_data)
val_dataloader = dict(dataset=_data)
test_dataloader = val_dataloader
