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
# dist_cfg.backend is left out: tools/train.py picks NCCL with CUDA, gloo without
# (dgsamp.engine.dist_backend); set env_cfg.dist_cfg.backend here to force one.
env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0))
# TensorBoard beside the JSON logs: `tensorboard --logdir work_dirs` shows losses, per-domain
# accuracies, keep fraction, gradient sparsity, skipped epochs and the per-epoch costs.
vis_backends = [dict(type='LocalVisBackend'), dict(type='TensorboardVisBackend')]
visualizer = dict(type='Visualizer', vis_backends=vis_backends)
log_processor = dict(by_epoch=True, window_size=20)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)
