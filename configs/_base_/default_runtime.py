# Runtime defaults shared by every dgsamp classification config.
custom_imports = dict(imports=['dgsamp'], allow_failed_imports=False)
default_scope = None
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=20),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=5, max_keep_ckpts=2,
                    save_best='acc/train_domains', rule='greater'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
)
env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
               dist_cfg=dict(backend='gloo'))
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='Visualizer', vis_backends=vis_backends)
log_processor = dict(by_epoch=True, window_size=20)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)
