"""Function, not only shape: the zoo computes what mdistiller's models compute.

Always: structural properties that distinguish the host's semantics (a ReLU between the blocks
of a stage; pre-activation views that keep negative values). Where mdistiller is importable
(a session that installed it by hand), every model is also compared output for output with the
host's own model carrying the same weights.
"""

import pytest
import torch

from mdistiller_ext.standalone.models import cifar_model_dict, imagenet_model_dict
from mdistiller_ext.standalone.models.blocks import Stage

STAGED = [("cifar", n) for n in ("resnet20", "resnet56", "resnet32x4", "ResNet18", "ResNet50", "ShuffleV1")] + \
         [("imagenet", n) for n in ("ResNet18", "ResNet50")]


def build(kind, name):
    torch.manual_seed(0)
    if kind == "cifar":
        return cifar_model_dict[name][0](num_classes=100).eval(), torch.randn(2, 3, 32, 32)
    return imagenet_model_dict[name](num_classes=1000).eval(), torch.randn(1, 3, 96, 96)


@pytest.mark.parametrize("kind,name", STAGED)
def test_blocks_after_the_first_of_a_stage_see_relu_outputs(kind, name):
    model, x = build(kind, name)
    seen = []
    stages = [m for m in model.modules() if isinstance(m, Stage)]
    assert stages, "stages must apply the host's between-block ReLU"
    for stage in stages:
        for i, block in enumerate(stage):
            if i:
                block.register_forward_pre_hook(lambda mod, inp: seen.append(inp[0].min().item()))
    with torch.no_grad():
        model(x)
    assert seen and min(seen) >= 0.0


@pytest.mark.parametrize("kind,name", STAGED + [("cifar", "resnet8x4")])
def test_preact_views_are_pre_relu(kind, name):
    model, x = build(kind, name)
    with torch.no_grad():
        _, feats = model(x)
    for f, p in zip(feats["feats"][1:], feats["preact_feats"][1:]):
        assert p.min() < 0 and torch.equal(f, torch.relu(p))
    # the stem's two views coincide in the host (its ReLU runs in place)
    assert torch.equal(feats["feats"][0], feats["preact_feats"][0])


@pytest.mark.host
@pytest.mark.parametrize("kind,name", [("cifar", n) for n in cifar_model_dict] + [("imagenet", n) for n in imagenet_model_dict])
def test_outputs_equal_the_hosts_models(kind, name):
    from mdistiller.models import cifar_model_dict as host_cifar
    from mdistiller.models import imagenet_model_dict as host_imagenet

    torch.manual_seed(0)
    if kind == "cifar":
        theirs, ours, x = host_cifar[name][0](num_classes=100), cifar_model_dict[name][0](num_classes=100), torch.randn(2, 3, 32, 32)
    else:
        theirs, ours, x = host_imagenet[name](pretrained=False), imagenet_model_dict[name](num_classes=1000), torch.randn(1, 3, 224, 224)
    ours.load_state_dict(theirs.state_dict())
    theirs, ours = theirs.double().eval(), ours.double().eval()
    with torch.no_grad():
        (a, fa), (b, fb) = theirs(x.double()), ours(x.double())
    scale = a.abs().max()
    assert (a - b).abs().max() <= 1e-9 * scale
    for key in ("feats", "preact_feats"):
        for u, v in zip(fa.get(key, []), fb.get(key, [])):
            assert (u - v).abs().max() <= 1e-9 * max(u.abs().max(), 1.0)
    assert (fa["pooled_feat"] - fb["pooled_feat"]).abs().max() <= 1e-9 * max(fa["pooled_feat"].abs().max(), 1.0)
