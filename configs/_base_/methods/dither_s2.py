# Dithered backprop at scale s = 2 (Δ = 2·std(δ), about 85% zeros): less gradient noise than s = 8.
# Chosen for StyledGlyphs/ResNet by training-domain accuracy in a seed-0 screen of s = 8, 4, 2 and
# s = 8 after 2 dense warmup epochs (docs/results/frontier_resnet_cartoon.md, "Follow-up").
custom_hooks = [dict(type='SparseBackwardHook', method='dither', scale=2.0)]
