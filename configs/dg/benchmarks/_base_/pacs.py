# PACS read from disk as released: data/PACS/<domain>/<class>/<image>
_base_ = ['./folder_benchmark.py']
dataset_type = 'PACS'
data_root = 'data/PACS'
test_domains = ['sketch']
num_classes = 7

_data = dict(type=dataset_type, data_root=data_root, test_domains=test_domains)
train_dataloader = dict(dataset=_data)
val_dataloader = dict(dataset=_data)
test_dataloader = val_dataloader
