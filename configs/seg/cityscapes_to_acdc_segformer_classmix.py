# Cityscapes -> ACDC (segmentation UDA, adverse conditions), DAFormer-style self-training;
# mIoU per domain: Cityscapes val and each ACDC condition's val. Layout:
#   data/cityscapes/leftImg8bit/{train,val}/<city>/<name>_leftImg8bit.png
#   data/cityscapes/gtFine/{train,val}/<city>/<name>_gtFine_labelTrainIds.png
#   data/acdc/rgb_anon/{fog,night,rain,snow}/{train,val}/<seq>/<name>_rgb_anon.png
#   data/acdc/gt/{fog,night,rain,snow}/val/<seq>/<name>_gt_labelTrainIds.png
# ACDC train images are unlabeled (no seg_map_path: label maps are never opened).
_base_ = ['gta5_to_cityscapes_segformer_classmix.py']
conditions = ['fog', 'night', 'rain', 'snow']
cs_train = dict(type='CityscapesDataset', data_root='data/cityscapes/',
                data_prefix=dict(img_path='leftImg8bit/train', seg_map_path='gtFine/train'),
                pipeline=_base_.cs_train_pipeline)
acdc_train = dict(type='ConcatDataset', datasets=[
    dict(type='CityscapesDataset', data_root='data/acdc/', img_suffix='_rgb_anon.png',
         data_prefix=dict(img_path=f'rgb_anon/{c}/train'), pipeline=_base_.target_pipeline)
    for c in conditions])
train_dataloader = dict(dataset=dict(source=cs_train, target=acdc_train))
val_dataloader = dict(dataset=dict(datasets=[_base_.cs_val] + [
    dict(type='CityscapesDataset', data_root='data/acdc/', img_suffix='_rgb_anon.png',
         seg_map_suffix='_gt_labelTrainIds.png',
         data_prefix=dict(img_path=f'rgb_anon/{c}/val', seg_map_path=f'gt/{c}/val'),
         test_mode=True, pipeline=_base_.test_pipeline) for c in conditions]))
test_dataloader = val_dataloader
val_evaluator = dict(domains=dict(
    cityscapes='/cityscapes/', acdc_fog='/rgb_anon/fog/', acdc_night='/rgb_anon/night/',
    acdc_rain='/rgb_anon/rain/', acdc_snow='/rgb_anon/snow/'), train_domains=['cityscapes'])
test_evaluator = val_evaluator
