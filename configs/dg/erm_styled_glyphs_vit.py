# ERM on StyledGlyphs ('sketch' held out) with a small timm ViT from scratch: vit_tiny's recipe
# at 32 px, patch 8 (16 tokens), depth 4, width 96, 3 heads (0.5 M parameters; no pretrained
# weights). One dense run takes about as long as the ResNet's
# (docs/results/frontier_benchmark_resnet.md).
#   python tools/train.py configs/dg/erm_styled_glyphs_vit.py
_base_ = ['./erm_styled_glyphs.py']
model = dict(model_name='vit_tiny_patch16_224',
             model_kwargs=dict(_delete_=True, img_size=32, patch_size=8, depth=4, embed_dim=96,
                               num_heads=3))
