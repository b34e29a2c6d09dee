# Iteration-based runtime for the small CPU runs on the embedded shapes benchmark.
# Shared by configs/det and configs/seg; each sets its own default_scope.
custom_imports = dict(imports=['dgsamp', 'dgsamp.models.backbones', 'dgsamp.detseg'],
                      allow_failed_imports=False)
max_iters = 1000
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(type='OptimWrapper',
                     optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
                     clip_grad=dict(max_norm=10.0))
param_scheduler = [dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100)]
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=max_iters, by_epoch=False,
                    max_keep_ckpts=1),
    sampler_seed=dict(type='DistSamplerSeedHook'))
# dist_cfg.backend is left out: tools/train.py picks NCCL with CUDA, gloo without
# (dgsamp.engine.dist_backend); set env_cfg.dist_cfg.backend here to force one.
env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0))
# TensorBoard beside the JSON logs (`tensorboard --logdir work_dirs`).
vis_backends = [dict(type='LocalVisBackend'), dict(type='TensorboardVisBackend')]
visualizer = dict(type='Visualizer', vis_backends=vis_backends)
log_processor = dict(type='LogProcessor', window_size=50, by_epoch=False)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0)
