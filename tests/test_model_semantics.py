"""Function, not only shape: the zoo computes what mdistiller's models compute.

Always: structural properties that distinguish the host's semantics (a ReLU between the blocks
of a stage; pre-activation views that keep negative values). Where mdistiller is importable
(a session that installed it by hand), every model is also compared output for output with the
host's own model carrying the same weights.
"""

import pytest
import torch

from mdistiller_ext.host.standalone.models import cifar_model_dict, imagenet_model_dict
from mdistiller_ext.host.standalone.models.blocks import Stage

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


@pytest.mark.host
@pytest.mark.parametrize("kind,name", [("cifar", n) for n in cifar_model_dict] + [("imagenet", n) for n in imagenet_model_dict])
def test_initial_weights_equal_the_hosts_under_one_seed(kind, name):
    """Same seed, same draws: the zoo initialises exactly as the host (initialisation moves accuracy by tenths)."""
    from mdistiller.models import cifar_model_dict as host_cifar
    from mdistiller.models import imagenet_model_dict as host_imagenet

    torch.manual_seed(0)
    theirs = host_cifar[name][0](num_classes=100) if kind == "cifar" else host_imagenet[name](pretrained=False)
    torch.manual_seed(0)
    ours = cifar_model_dict[name][0](num_classes=100) if kind == "cifar" else imagenet_model_dict[name](num_classes=1000)
    a, b = theirs.state_dict(), ours.state_dict()
    assert list(a) == list(b)
    assert [k for k in a if not torch.equal(a[k], b[k])] == []


def _linear_and_conv(model):
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    return convs, [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]


@pytest.mark.parametrize("name,conv,linear", [
    ("resnet8", "kaiming", "default"), ("wrn_16_2", "sqrt2n", "zero_bias"), ("vgg8", "sqrt2n", "small"),
    ("MobileNetV2", "sqrt2n", "small"), ("ShuffleV1", "default", "default"), ("ShuffleV2", "default", "default")])
def test_init_rules_per_layer(name, conv, linear):
    """The host's rules, checked without the host: conv std sqrt(2/(k*k*out)) (normal) or PyTorch's
    uniform default; classifier N(0, 0.01) with zero bias, zero bias only, or PyTorch's default."""
    torch.manual_seed(0)
    convs, fc = _linear_and_conv(cifar_model_dict[name][0](num_classes=100))
    fc_w, fc_b = fc.weight.detach(), fc.bias.detach()
    big = max(convs, key=lambda m: m.weight.numel())
    w = big.weight.detach()
    fan_out = big.kernel_size[0] * big.kernel_size[1] * big.out_channels
    fan_in = w[0].numel()
    if conv == "default":  # kaiming_uniform(a=sqrt(5)): U(-1/sqrt(fan_in), 1/sqrt(fan_in))
        assert w.abs().max() <= 1 / fan_in ** 0.5 and w.std() == pytest.approx((1 / 3 / fan_in) ** 0.5, rel=0.1)
    else:
        assert w.std() == pytest.approx((2 / fan_out) ** 0.5, rel=0.1) and w.abs().max() > 2 / fan_out ** 0.5
    if linear == "small":
        assert fc_w.std() == pytest.approx(0.01, rel=0.1) and not fc_b.any()
    else:
        bound = 1 / fc.in_features ** 0.5
        assert fc_w.abs().max() <= bound and fc_w.std() > 0.3 * bound
        assert (not fc_b.any()) if linear == "zero_bias" else bool(fc_b.abs().max() > 0)
