"""TimmBackbone: multi-scale NCHW outputs for CNNs, channels-last and ViT models, frozen
stages, local-file-only weights, registration where mmdet/mmseg configs look."""

from __future__ import annotations

import pytest
import timm
import torch

from dgsamp.models.backbones import TimmBackbone


def test_resnet_out_indices_shapes_and_channels():
    b = TimmBackbone("resnet18", out_indices=(1, 2, 3, 4))
    outs = b(torch.zeros(2, 3, 64, 96))
    assert [tuple(o.shape) for o in outs] == [(2, 64, 16, 24), (2, 128, 8, 12),
                                              (2, 256, 4, 6), (2, 512, 2, 3)]
    assert b.out_channels == [64, 128, 256, 512] and b.strides == [4, 8, 16, 32]


def test_convnext_is_nchw():
    b = TimmBackbone("convnext_atto", out_indices=(0, 2))
    outs = b(torch.zeros(1, 3, 64, 64))
    assert [tuple(o.shape) for o in outs] == [(1, 40, 16, 16), (1, 160, 4, 4)]


def test_swin_channels_last_returned_as_nchw():
    b = TimmBackbone("swin_tiny_patch4_window7_224", img_size=64, window_size=4)
    assert b.channels_last
    outs = b(torch.randn(1, 3, 64, 64))
    assert [tuple(o.shape) for o in outs] == [(1, 96, 16, 16), (1, 192, 8, 8),
                                              (1, 384, 4, 4), (1, 768, 2, 2)]
    # NCHW really: the channel axis equals timm's NHWC last axis, permuted
    raw = b.body(torch.zeros(1, 3, 64, 64))[0]
    assert torch.equal(raw.permute(0, 3, 1, 2), b(torch.zeros(1, 3, 64, 64))[0])


def test_vit_token_maps_via_timm_getter():
    b = TimmBackbone("vit_tiny_patch16_224", img_size=64, out_indices=(5, 11))
    outs = b(torch.zeros(1, 3, 64, 64))
    assert [tuple(o.shape) for o in outs] == [(1, 192, 4, 4), (1, 192, 4, 4)]


def _frozen_names(b):
    return {n for n, p in b.named_parameters() if not p.requires_grad}


def test_frozen_stages_resnet_stem_and_layer1():
    b = TimmBackbone("resnet18", out_indices=(1, 2, 3, 4), frozen_stages=2)
    frozen = _frozen_names(b)
    assert any(n.startswith("body.conv1") for n in frozen)
    assert any(n.startswith("body.layer1.") for n in frozen)
    assert not any(n.startswith("body.layer2.") for n in frozen)
    b.train()
    assert not b.body.bn1.training and not b.body.layer1[0].bn1.training
    assert b.body.layer2[0].bn1.training
    running = b.body.bn1.running_mean.clone()
    sum(o.sum() for o in b(torch.randn(2, 3, 32, 32))).backward()
    assert torch.equal(b.body.bn1.running_mean, running)  # eval mode: statistics untouched
    assert b.body.conv1.weight.grad is None and b.body.layer2[0].conv1.weight.grad is not None


def test_frozen_stages_swin_and_vit_include_embeddings():
    s = TimmBackbone("swin_tiny_patch4_window7_224", img_size=64, window_size=4,
                     frozen_stages=1)
    frozen = _frozen_names(s)
    assert any("patch_embed" in n for n in frozen) and any("layers_0" in n for n in frozen)
    assert not any("layers_1" in n for n in frozen)
    v = TimmBackbone("vit_tiny_patch16_224", img_size=64, frozen_stages=2)
    frozen = _frozen_names(v)
    assert {"body.model.cls_token", "body.model.pos_embed"} <= frozen
    assert any(".blocks.1." in n for n in frozen) and not any(".blocks.2." in n for n in frozen)
    with pytest.raises(ValueError, match="frozen_stages"):
        TimmBackbone("resnet18", frozen_stages=9)


def test_pretrained_from_local_file_only(tmp_path):
    ref = timm.create_model("resnet18", pretrained=False)
    path = tmp_path / "r18.pth"
    torch.save(ref.state_dict(), path)
    b = TimmBackbone("resnet18", pretrained=str(path), out_indices=(4,))
    assert torch.equal(b.body.layer4[0].conv1.weight, ref.layer4[0].conv1.weight)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        TimmBackbone("resnet18", pretrained=str(tmp_path / "missing.pth"))
    with pytest.raises(ValueError, match="download"):
        TimmBackbone("resnet18", pretrained=True)


def test_norm_layer_with_arguments_from_a_config_dict():
    from dgsamp.models.timm_factory import create_timm_model

    model = create_timm_model("resnet10t", num_classes=0, channels=(32, 64, 128, 256),
                              stem_width=16, norm_layer=dict(type="groupnorm", num_groups=4))
    norms = [m for m in model.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert norms and all(m.num_groups == 4 for m in norms)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    with pytest.raises(ValueError, match="Unknown norm_layer type 'groupnrom'.*groupnorm1"):
        create_timm_model("resnet10t", norm_layer=dict(type="groupnrom", num_groups=8))


def test_registered_in_root_models_and_init_weights_keeps_weights():
    from mmengine.registry import MODELS

    b = MODELS.build(dict(type="TimmBackbone", model_name="resnet18", out_indices=(2,)))
    w = b.body.layer1[0].conv1.weight.clone()
    b.init_weights()
    assert torch.equal(w, b.body.layer1[0].conv1.weight)
