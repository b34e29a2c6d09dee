# ERM on StyledGlyphs with DomainBed's training augmentation (its random crop, colour jitter and
# grayscale; no horizontal flip, which would turn letters into other symbols), on the training
# loader only: the lever tried against the benchmark's seed SD (docs/results/frontier.md).
#   python tools/train.py configs/dg/erm_styled_glyphs_aug.py
_base_ = ['./erm_styled_glyphs.py']
train_dataloader = dict(dataset=dict(transforms=[
    dict(type='RandomResizedCrop', size=32, scale=(0.7, 1.0), antialias=True),
    dict(type='ColorJitter', brightness=0.3, contrast=0.3, saturation=0.3, hue=0.3),
    dict(type='RandomGrayscale', p=0.1),
]))
