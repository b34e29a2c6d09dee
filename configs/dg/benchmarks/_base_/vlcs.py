# VLCS read from disk as released: data/VLCS/<domain>/<class>/<image>
_base_ = ['./folder_benchmark.py']
dataset_type = 'VLCS'
data_root = 'data/VLCS'
test_domains = ['Caltech101']
num_classes = 5

_data = dict(type=dataset_type, data_root=data_root, test_domains=test_domains)
train_dataloader = dict(dataset=_data)
val_dataloader = dict(dataset=_data)
test_dataloader = val_dataloader
