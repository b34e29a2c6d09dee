# Faster R-CNN + FPN on a timm resnet50 for the public detection DA benchmarks. Weights come only
# from a local file: set model.detector.backbone.pretrained (mean-teacher configs) or
# model.backbone.pretrained to e.g. 'checkpoints/resnet50_a1_in1k.pth'.
_base_ = ['faster_rcnn_timm_r18.py']
model = dict(
    backbone=dict(model_name='resnet50', frozen_stages=2, norm_eval=True),
    neck=dict(in_channels=[256, 512, 1024, 2048], out_channels=256),
    rpn_head=dict(in_channels=256, feat_channels=256,
                  anchor_generator=dict(scales=[8])),
    roi_head=dict(bbox_roi_extractor=dict(out_channels=256),
                  bbox_head=dict(in_channels=256, fc_out_channels=1024)),
    test_cfg=dict(rcnn=dict(max_per_img=100)))
