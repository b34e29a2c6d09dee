# ERM on DomainNet with timm vit_small_patch16_224 (DomainBed's protocol: one held-out domain;
# sweep all with tools/sweep.py). Pretrained weights: a local file, used when it exists
# (dgsamp never downloads); otherwise the featurizer starts from scratch. Point elsewhere with
#   --cfg-options model.pretrained=/path/to/weights.pth   (or .safetensors)
# Other algorithms: tools/sweep.py THIS_CONFIG --algorithms CORAL DANN MixStyle ...
# (dgsamp.models.algorithms.apply_algorithm sets model.type, num_domains, batching, optimizers).
_base_ = [
    './_base_/domainnet.py',
    './_base_/domainbed_schedule.py',
    './_base_/domainbed_runtime.py',
]
import os.path as osp  # noqa: E402  (after _base_: mmengine reads this as a plain config)

_pretrained = 'checkpoints/vit_small_patch16_224.augreg_in21k_ft_in1k.pth'
model = dict(type='ERM', model_name='vit_small_patch16_224', num_classes={{_base_.num_classes}},
             in_chans=3, pretrained=_pretrained if osp.isfile(_pretrained) else None)
train_cfg = dict(max_iters=15000)
