# DANN in the DA setting on colored_digits: the held-out domain's 80% part comes as unlabeled
# target batches (labels -1, never loaded) beside the source domains, one minibatch each.
#   python tools/train.py configs/da/dann_colored_digits.py
_base_ = ['../dg/dann_colored_digits.py']
train_dataloader = dict(dataset=dict(
    _delete_=True, type='SourceTargetDataset', source={{_base_.train_dataloader.dataset}}))
