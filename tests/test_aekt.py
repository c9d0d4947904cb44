"""AEKT's distiller and task-serialization layer."""
import numpy as np
import pytest
import torch

from mdistiller_ext.host import adapter as host
from mdistiller_ext.host import registration
from mdistiller_ext.reporting.serialization import class_similarity, correlation, oriented_similarity, serialization_matrix
from mdistiller_ext.methods.aekt import AEKT
from mdistiller_ext.methods.dkd import DKD
from mdistiller_ext.methods.heads import SerializationLayer, SerializedStudent
from mdistiller_ext.host.standalone.models import cifar_model_dict


def make(serial="cls_then_kd", ratio="teacher_over_student", decay="identity", c=10, seed=0):
    torch.manual_seed(seed)
    cfg = registration.base_cfg()
    cfg.AEKT.SERIAL, cfg.AEKT.RATIO_MODE, cfg.AEKT.SERIAL_DECAY = serial, ratio, decay
    s, t = cifar_model_dict["resnet8"][0](num_classes=c), cifar_model_dict["resnet8"][0](num_classes=c)
    return AEKT(s, t, cfg), cfg


def test_layer_starts_as_identity():
    x = torch.randn(5, 10)
    for decay in (True, False):
        layer = SerializationLayer(10, decay_to_identity=decay)
        assert torch.equal(layer(x), x)
    d, _ = make()
    d.eval()
    z_cls, z_kd = d._heads(torch.randn(3, 3, 32, 32))
    assert torch.allclose(z_cls, z_kd)


def test_ratio_none_serial_none_equals_dkd():
    d, cfg = make(serial="none", ratio="none")
    cfg.DKD.BETA, cfg.DKD.T, cfg.DKD.WARMUP = cfg.AEKT.BETA, cfg.AEKT.T, cfg.AEKT.WARMUP
    dkd = DKD(d.student, d.teacher, cfg)
    x, y = torch.randn(6, 3, 32, 32), torch.randint(0, 10, (6,))
    d.train()
    dkd.train()
    torch.manual_seed(1)
    _, a = d(image=x, target=y, epoch=7)
    torch.manual_seed(1)
    _, b = dkd(image=x, target=y, epoch=7)
    for k in ("loss_ce", "loss_kd"):
        assert a[k].item() == pytest.approx(b[k].item(), abs=1e-6)


def test_warmup_scales_distillation():
    d, _ = make()
    d.train()
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    torch.manual_seed(0)
    full = d(image=x, target=y, epoch=20)[1]["loss_kd"].item()
    torch.manual_seed(0)
    half = d(image=x, target=y, epoch=10)[1]["loss_kd"].item()
    assert half == pytest.approx(full / 2, rel=1e-5)


def test_layer_trains_and_decay_targets():
    d, _ = make()
    d.train()
    opt = torch.optim.SGD(d.get_learnable_parameters(), lr=0.1)
    x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
    first = None
    for _ in range(8):
        opt.zero_grad()
        _, ls = d(image=x, target=y, epoch=20)
        total = sum(ls.values())
        first = first if first is not None else total.item()
        total.backward()
        opt.step()
    assert total.item() < first
    assert not torch.allclose(d.serial.matrix(), torch.eye(10))
    # with no gradient, weight decay pulls W to I (identity mode) or towards 0 (zero mode)
    for decay, target in ((True, torch.eye(4)), (False, torch.zeros(4, 4))):
        layer = SerializationLayer(4, decay_to_identity=decay)
        with torch.no_grad():
            layer.matrix()  # identity at start
        o = torch.optim.SGD(layer.parameters(), lr=0.5, weight_decay=0.5)
        for _ in range(60):
            o.zero_grad()
            (layer(torch.zeros(1, 4)).sum() * 0).backward()
            o.step()
        assert torch.allclose(layer.matrix().detach(), target, atol=1e-3)


def test_parameter_accounting_and_deployable_student():
    d, _ = make("cls_then_kd", c=100)
    assert d.get_extra_parameters() == 100 * 100 + 100
    assert not any(k.startswith("serial") for k in d.student.state_dict())
    k, _ = make("kd_then_cls", c=100)
    assert k.get_extra_parameters() == 0
    assert isinstance(k.student, SerializedStudent)
    plain = sum(p.numel() for p in cifar_model_dict["resnet8"][0](num_classes=100).parameters())
    assert sum(p.numel() for p in k.student.parameters()) == plain + 10100
    k.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        deployed = k(image=x)
        inner = k.student.net(x)[0]
        assert torch.allclose(deployed, k.student.serial(inner))
    n, _ = make("none", c=100)
    assert n.get_extra_parameters() == 0


def test_serialization_matrix_from_state_dicts():
    for serial in ("cls_then_kd", "kd_then_cls"):
        for decay in ("identity", "zero"):
            d, _ = make(serial, decay=decay)
            with torch.no_grad():
                layer = d.serialization_layer()
                (layer.delta if decay == "identity" else layer.weight).add_(0.25)
            sd = {"module." + k: v for k, v in d.state_dict().items()}
            assert np.allclose(serialization_matrix(sd), np.eye(10) + 0.25)
    with pytest.raises(KeyError):
        serialization_matrix(make("none")[0].state_dict())


def test_class_similarity_and_correlation():
    class Fixed(torch.nn.Module):
        def forward(self, x):
            return x[:, :3] * 5, {}

    images = torch.tensor([[1.0, 0, 0], [1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    loader = [(images, torch.tensor([0, 0, 1, 2]))]
    sim = class_similarity(Fixed(), loader, 3, torch.device("cpu"))
    expected = torch.softmax(torch.eye(3, dtype=torch.float64) * 5, 1).numpy()
    assert np.allclose(sim, expected) and np.allclose(sim.sum(1), 1)
    a = np.random.RandomState(0).rand(5, 5)
    assert correlation(a, 2 * a + 1) == pytest.approx(1.0)
    assert correlation(a, -a) == pytest.approx(-1.0)


def test_serialization_is_compared_in_its_own_orientation():
    """A layer that turns the student's class-j logit into the teacher's distribution for class j has
    W[:, j] = sim[j]: with a non-symmetric teacher only the transposed similarity correlates with it."""
    from mdistiller_ext.methods.heads import SerializationLayer

    rng = np.random.RandomState(0)
    sim = rng.dirichlet(np.full(6, 0.3), size=6)  # rows: true class, columns: teacher probabilities
    assert not np.allclose(sim, sim.T)
    layer = SerializationLayer(6, decay_to_identity=False)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(oriented_similarity(sim)))
        layer.bias.zero_()
        out = layer(torch.eye(6, dtype=torch.float32))  # row j: the output for a one-hot class-j logit
    assert np.allclose(out.numpy(), sim, atol=1e-6)
    w = layer.weight.detach().double().numpy()
    assert correlation(w, oriented_similarity(sim)) == pytest.approx(1.0)
    assert correlation(w, sim) < 0.9


def test_serialization_layer_keeps_small_deltas_under_bf16_autocast():
    """W = I + delta in bf16 rounds a delta of a few 1e-3 away (bf16's step near 1.0 is 2^-7): the layer
    would be exactly the identity on a GPU. It runs in fp32 under autocast; its gradient too."""
    from mdistiller_ext.methods.heads import SerializationLayer

    g = torch.Generator().manual_seed(0)
    layer = SerializationLayer(10)
    with torch.no_grad():
        layer.delta.copy_(0.003 * torch.randn(10, 10, generator=g))
    z = torch.randn(6, 10, generator=g)
    want = z.double() @ (torch.eye(10, dtype=torch.float64) + layer.delta.double()).T
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = layer(z.bfloat16())
    assert got.dtype == torch.float32
    # the bf16 input's own rounding is the only error left (about 2^-9 of |z|), far below the delta's effect
    assert (got.double() - want).abs().max() < 0.02
    assert (got.double() - z.bfloat16().double()).abs().max() > 0.01  # not the identity
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(z).sum()
    out.backward()  # outside autocast, as the engine does (step.py)
    fp32 = SerializationLayer(10)
    with torch.no_grad():
        fp32.delta.copy_(layer.delta)
    fp32(z).sum().backward()
    assert torch.allclose(layer.delta.grad, fp32.delta.grad, atol=1e-6)
