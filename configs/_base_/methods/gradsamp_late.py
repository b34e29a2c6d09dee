# GradSamp, first skip later: one epoch in 4 from epoch 6 on (0-based 6, 10, 14, ...).
# For models that start slowly: the hybrid ViT of the frontier study sits at chance for its
# first 3-5 epochs, so gradsamp-every4's skip of epoch 2 samples a plateau update
# (docs/results/frontier.md). With 8 epochs only epoch 6 is skipped.
custom_hooks = [dict(type='GradSampHook', schedule=dict(type='periodic', every=4, warmup=6))]
