"""The zoo against the host's facts, and every student with both DHKD heads (timm-style checks)."""
import pytest
import torch

from mdistiller_ext.host import adapter as host
from mdistiller_ext.host import registration
from mdistiller_ext.methods.dhkd import DHKD
from mdistiller_ext.methods.heads import AuxiliaryHead, classifier_of
from mdistiller_ext.host.standalone.models import cifar_model_dict, imagenet_model_dict

CIFAR_STUDENTS = [n for n, (_, ckpt) in cifar_model_dict.items() if ckpt is None]
IMAGENET_STUDENTS = ["ResNet18", "MobileNetV1"]


def expected_head_parameters(kind: str, in_dim: int, num_classes: int, hidden: int = 200) -> int:
    """The count the spec gives: linear (D+1)C; nonlinear (D+1)H + 2H + (H+1)C."""
    if kind == "linear":
        return (in_dim + 1) * num_classes
    return (in_dim + 1) * hidden + 2 * hidden + (hidden + 1) * num_classes


def shapes(x):
    if isinstance(x, dict):
        return {k: shapes(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [shapes(v) for v in x]
    return list(x.shape)


def check_against_facts(model, facts, x):
    sd = model.state_dict()
    assert [(k, list(v.shape), str(v.dtype).replace("torch.", "")) for k, v in sd.items()] == \
        [(k, s, d) for k, s, d in facts["state_dict"]]
    assert sum(p.numel() for p in model.parameters()) == facts["num_params"]
    model.eval()
    with torch.no_grad():
        logits, feats = model(x)
    assert shapes(logits) == facts["forward"]["logits"]
    assert shapes(feats) == facts["forward"]["feats"]
    if "stage_channels" in facts:
        assert model.get_stage_channels() == facts["stage_channels"]


@pytest.mark.parametrize("name", list(cifar_model_dict))
def test_cifar_model_matches_host_facts(name, cifar_facts):
    facts = cifar_facts[name]
    fn, ckpt = cifar_model_dict[name]
    assert (ckpt is None) == (facts["teacher_checkpoint"] is None)
    if ckpt is not None:
        assert ckpt == facts["teacher_checkpoint"]
    check_against_facts(fn(num_classes=100), facts, torch.randn(2, 3, 32, 32))


@pytest.mark.parametrize("name", list(imagenet_model_dict))
def test_imagenet_model_matches_host_facts(name, imagenet_facts):
    check_against_facts(imagenet_model_dict[name](num_classes=1000), imagenet_facts[name], torch.randn(1, 3, 224, 224))


def test_host_checkpoint_round_trip(tmp_path):
    """A host-style checkpoint ({'model': state_dict}) loads strictly and reproduces the outputs."""
    from mdistiller_ext.runs.checkpoint import load_into

    src = cifar_model_dict["resnet20"][0](num_classes=100).eval()
    torch.save({"model": src.state_dict()}, tmp_path / "ckpt_epoch_240.pth")
    dst = cifar_model_dict["resnet20"][0](num_classes=100).eval()
    load_into(dst, str(tmp_path / "ckpt_epoch_240.pth"), "student")
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(src(x)[0], dst(x)[0])


def _dhkd(student, head, num_classes, teacher=None):
    cfg = registration.base_cfg()
    cfg.DHKD.HEAD = head
    teacher = teacher if teacher is not None else cifar_model_dict["resnet8"][0](num_classes=num_classes)
    return DHKD(student, teacher, cfg)


def _student(name, dataset):
    if dataset == "cifar":
        return cifar_model_dict[name][0](num_classes=100)
    return imagenet_model_dict[name](num_classes=1000)


@pytest.mark.parametrize("head", ["linear", "nonlinear"])
@pytest.mark.parametrize("name,dataset", [(n, "cifar") for n in CIFAR_STUDENTS] + [(n, "imagenet") for n in IMAGENET_STUDENTS])
def test_every_student_with_both_heads(name, dataset, head):
    torch.manual_seed(0)
    student = _student(name, dataset)
    if dataset == "cifar":
        x, c, teacher = torch.randn(4, 3, 32, 32), 100, None
    else:
        # a smaller ImageNet-style input keeps the test fast; the head only sees the pooled feature
        x, c, teacher = torch.randn(2, 3, 64, 64), 1000, imagenet_model_dict["ResNet18"](num_classes=1000)
    d = _dhkd(student, head, c, teacher)
    d.train()
    logits, losses = d(image=x, target=torch.randint(0, c, (x.shape[0],)), epoch=1)
    assert set(losses) == {"loss_ce", "loss_kd"} and logits.shape == (x.shape[0], c)
    sum(losses.values()).backward()
    for n, p in d.aux_head.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"aux head {n} got no gradient"
    for n, p in student.named_parameters():
        assert p.grad is not None, f"student {n} got no gradient"
    assert all(p.grad is None for p in d.teacher.parameters())
    d_in = classifier_of(student).in_features
    assert d.get_extra_parameters() == expected_head_parameters(head, d_in, c)
    # the deployed student is the plain student: its checkpoint loads into a fresh one
    fresh = _student(name, dataset)
    fresh.load_state_dict(d.student.state_dict())
    d.eval()
    with torch.no_grad():
        assert torch.equal(d(image=x), fresh.eval()(x)[0])


@pytest.mark.parametrize("d_in,linear,nonlinear", [(64, 6500, 33500), (256, 25700, 71900), (1024, 102500, 225500)])
def test_head_parameter_counts_from_spec(d_in, linear, nonlinear):
    assert sum(p.numel() for p in AuxiliaryHead(d_in, 100, "linear").parameters()) == linear
    assert sum(p.numel() for p in AuxiliaryHead(d_in, 100, "nonlinear").parameters()) == nonlinear


def test_nonlinear_head_layer_order():
    head = AuxiliaryHead(64, 10, "nonlinear", hidden=200, dropout=0.1)
    kinds = [type(m).__name__ for m in head.net]
    assert kinds == ["Linear", "Dropout", "BatchNorm1d", "ReLU", "Linear"]


def test_single_head_ablation_puts_loss_on_main_head():
    torch.manual_seed(0)
    d = _dhkd(cifar_model_dict["resnet8"][0](num_classes=10), "none", 10)
    assert d.aux_head is None and d.get_extra_parameters() == 0
    x = torch.randn(4, 3, 32, 32)
    d.train()
    _, losses = d(image=x, target=torch.zeros(4, dtype=torch.long))
    losses["loss_kd"].backward()
    assert d.student.fc.weight.grad.abs().sum() > 0


def test_kd_off_epoch_and_main_kd_option():
    torch.manual_seed(0)
    cfg = registration.base_cfg()
    cfg.DHKD.KD_OFF_EPOCH = 50
    cfg.DHKD.MAIN_KD_WEIGHT = 0.0
    d = DHKD(cifar_model_dict["resnet8"][0](num_classes=10), cifar_model_dict["resnet8"][0](num_classes=10), cfg).train()
    x, y = torch.randn(4, 3, 32, 32), torch.zeros(4, dtype=torch.long)
    assert d(image=x, target=y, epoch=49)[1]["loss_kd"].item() > 0
    assert d(image=x, target=y, epoch=50)[1]["loss_kd"].item() == 0


@pytest.mark.parametrize("student,head_init,expect", [
    ("vgg8", "student", "small"), ("MobileNetV2", "student", "small"), ("wrn_16_2", "student", "zero_bias"),
    ("resnet8", "student", "default"), ("vgg8", "default", "default")])
def test_dhkd_head_follows_the_students_init_rule(student, head_init, expect):
    cfg = registration.base_cfg()
    cfg.DHKD.HEAD_INIT = head_init
    torch.manual_seed(0)
    s = cifar_model_dict[student][0](num_classes=100)
    d = DHKD(s, cifar_model_dict["resnet8"][0](num_classes=100), cfg)
    w, b = d.aux_head.net.weight.detach(), d.aux_head.net.bias.detach()
    if expect == "small":
        assert w.std() == pytest.approx(0.01, rel=0.1) and not b.any()
    else:
        bound = 1 / w.shape[1] ** 0.5  # PyTorch's default: U(-1/sqrt(in), 1/sqrt(in))
        assert w.abs().max() <= bound and w.std() > 0.3 * bound
        assert (not b.any()) if expect == "zero_bias" else bool(b.abs().max() > 0)


def _tensors(out):
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        return [t for k in sorted(out) for t in _tensors(out[k])]
    if isinstance(out, (list, tuple)):
        return [t for x in out for t in _tensors(x)]
    return []


@pytest.mark.host
@pytest.mark.parametrize("name,size", [(n, 32) for n in cifar_model_dict] + [(n, 224) for n in imagenet_model_dict])
def test_stand_in_computes_exactly_what_mdistillers_model_computes(name, size):
    """The same weights and input give the same bits, forward (logits and every feature) and backward (every
    parameter's gradient): a run's numbers do not depend on whether mdistiller is installed. (The pooling had
    summed in another order than the host's fixed windows: 1e-7 apart, epochs later whole points.)"""
    from mdistiller_ext.host import adapter as host

    imagenet = size == 224
    build_host = host.imagenet_model_dict[name] if imagenet else host.cifar_model_dict[name][0]
    build_ours = imagenet_model_dict[name] if imagenet else cifar_model_dict[name][0]
    classes = 1000 if imagenet else 100
    torch.manual_seed(0)
    theirs, ours = build_host(num_classes=classes), build_ours(num_classes=classes)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(1 if imagenet else 4, 3, size, size, generator=torch.Generator().manual_seed(1))
    out_theirs, out_ours = theirs(x), ours(x)
    a, b = _tensors(out_theirs), _tensors(out_ours)
    assert len(a) == len(b) and all(torch.equal(p, q) for p, q in zip(a, b))
    out_theirs[0].square().sum().backward()
    out_ours[0].square().sum().backward()
    grads = dict(ours.named_parameters())
    for key, p in theirs.named_parameters():
        assert (p.grad is None) == (grads[key].grad is None), key
        assert p.grad is None or torch.equal(p.grad, grads[key].grad), key
