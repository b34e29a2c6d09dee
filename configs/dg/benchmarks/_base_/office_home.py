# OfficeHome read from disk as released: data/office_home/<domain>/<class>/<image>
_base_ = ['./folder_benchmark.py']
dataset_type = 'OfficeHome'
data_root = 'data/office_home'
test_domains = ['Art']
num_classes = 65

_data = dict(type=dataset_type, data_root=data_root, test_domains=test_domains)
train_dataloader = dict(dataset=_data)
val_dataloader = dict(dataset=_data)
test_dataloader = val_dataloader
