# StyledGlyphs (embedded, generated on first use from matplotlib's fonts and scikit-image's
# photos; dgsamp/datasets/glyphs.py): 10 letters in four PACS-like style domains 'photo',
# 'painting', 'cartoon', 'sketch', 3,000 RGB 32x32 images each. Train on three, test on the
# held-out one; evaluation reports every domain (training domains on their 20% held-out part,
# the test domain on all 3,000 images: DomainBed's protocol).
_base_ = ['./embedded_loaders.py']
test_domains = ['sketch']
dataset_type = 'StyledGlyphs'
data_seed = 0            # which draw of fonts, jitter and styles builds the domains
images_per_domain = 3000
image_size = 32
num_classes = 10
in_chans = 3
num_domains = 4

_data = dict(type=dataset_type, test_domains=test_domains, seed=data_seed,
             images_per_domain=images_per_domain, num_classes=num_classes,
             image_size=image_size, split_seed=0)
train_dataloader = dict(batch_size=64, dataset=_data)
val_dataloader = dict(dataset=_data)
test_dataloader = val_dataloader
