# The runtime of the DomainBed-protocol benchmarks: dgsamp's default runtime with iteration-based
# logging and checkpoints every validation (300 steps), the best by training-domain accuracy.
_base_ = ['../../../_base_/default_runtime.py']
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=300, max_keep_ckpts=2,
                    save_best='acc/train_domains', rule='greater'))
log_processor = dict(by_epoch=False)
