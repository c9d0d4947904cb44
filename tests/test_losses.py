"""Golden values and gradients of every loss against the specs' closed forms (float64)."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mdistiller_ext.methods import losses

LOG_COSH_1 = 0.4337808304830271  # log(cosh(1))


def clamped_bkn(zs: np.ndarray, zt: np.ndarray, tau: float, dtype=np.float64) -> float:
    """The spec's sigmoid/clamp formulation, literally (overflows to inf in float32 for big gaps)."""
    eps = dtype(1e-8)
    r = np.clip(1 / (1 + np.exp(-(zs - zt).astype(dtype) / dtype(tau))), eps, dtype(1) - eps)
    with np.errstate(divide="ignore"):
        per = 0.5 * np.log(1 / (2 * r)) + 0.5 * np.log(1 / (2 * (1 - r)))
    return float(tau ** 2 * per.sum(axis=1).mean())


def clamped_bkl(zs: np.ndarray, zt: np.ndarray, tau: float) -> float:
    eps = 1e-8
    p = np.clip(1 / (1 + np.exp(-zs / tau)), eps, 1 - eps)
    q = np.clip(1 / (1 + np.exp(-zt / tau)), eps, 1 - eps)
    per = q * np.log(q / p) + (1 - q) * np.log((1 - q) / (1 - p))
    return float(tau ** 2 * per.sum(axis=1).mean())


def t64(x):
    return torch.tensor(x, dtype=torch.float64)


def test_log_cosh_golden_and_stable():
    assert losses.log_cosh(t64([1.0])).item() == pytest.approx(LOG_COSH_1, abs=1e-15)
    assert losses.log_cosh(t64([0.0])).item() == 0.0
    big = losses.log_cosh(torch.tensor([1e4, -1e4]))
    assert torch.allclose(big, torch.tensor([1e4 - math.log(2)] * 2))


def test_softmax_blind_example():
    """[2,3,4] and [-2,-1,0] have the same softmax: KD sees nothing, BinaryKL-Norm sees the shift."""
    zs, zt = t64([[2.0, 3.0, 4.0]]), t64([[-2.0, -1.0, 0.0]])
    assert torch.allclose(F.softmax(zs, 1), F.softmax(zt, 1))
    assert losses.kd_loss(zs, zt, 4.0).item() == pytest.approx(0.0, abs=1e-12)
    # gap 4 everywhere, tau 2: tau^2 * 3 * log cosh(4 / (2*2))
    assert losses.binary_kl_norm(zs, zt, 2.0).item() == pytest.approx(4 * 3 * LOG_COSH_1, rel=1e-12)
    assert losses.binary_kl(zs, zt, 2.0).item() > 0.5


def test_bkn_matches_clamped_formula_where_finite():
    rng = np.random.RandomState(0)
    zs, zt = rng.randn(8, 100) * 5, rng.randn(8, 100) * 5
    got = losses.binary_kl_norm(t64(zs), t64(zt), 2.0).item()
    assert got == pytest.approx(clamped_bkn(zs, zt, 2.0), rel=1e-9)
    # the clamp region: in float32 the literal formula overflows, the stable one stays exact
    zs_big = np.full((1, 4), 40.0, dtype=np.float32)
    zt0 = np.zeros((1, 4), dtype=np.float32)
    assert math.isinf(clamped_bkn(zs_big, zt0, 2.0, np.float32))
    stable = losses.binary_kl_norm(torch.from_numpy(zs_big), torch.from_numpy(zt0), 2.0).item()
    assert stable == pytest.approx(4 * 4 * (10 + math.log1p(math.exp(-20)) - math.log(2)), rel=1e-6)


def test_bkn_gradient_closed_form_and_bound():
    zs = t64(np.random.RandomState(1).randn(4, 10) * 30).requires_grad_()
    zt = t64(np.random.RandomState(2).randn(4, 10) * 30)
    tau, n = 2.0, 4
    losses.binary_kl_norm(zs, zt, tau).backward()
    expected = tau / (2 * n) * torch.tanh((zs.detach() - zt) / (2 * tau))
    assert torch.allclose(zs.grad, expected, atol=1e-14)
    assert zs.grad.abs().max() <= tau / (2 * n)
    assert torch.autograd.gradcheck(lambda z: losses.binary_kl_norm(z, zt[:3, :5], tau), (t64(np.random.randn(3, 5)).requires_grad_(),))


def test_bkl_matches_clamped_formula_and_is_finite():
    rng = np.random.RandomState(3)
    zs, zt = rng.randn(6, 20) * 3, rng.randn(6, 20) * 3
    assert losses.binary_kl(t64(zs), t64(zt), 2.0).item() == pytest.approx(clamped_bkl(zs, zt, 2.0), rel=1e-9)
    # a hand value: one class, p = sigmoid(0) = 1/2, q = sigmoid(1)
    q = 1 / (1 + math.exp(-1.0))
    hand = 4 * (q * math.log(2 * q) + (1 - q) * math.log(2 * (1 - q)))
    assert losses.binary_kl(t64([[0.0]]), t64([[2.0]]), 2.0).item() == pytest.approx(hand, rel=1e-12)
    z = (torch.randn(4, 10) * 30).requires_grad_()
    v = losses.binary_kl(z, torch.randn(4, 10) * 30, 2.0)
    v.backward()
    assert torch.isfinite(v) and torch.isfinite(z.grad).all()
    assert torch.autograd.gradcheck(lambda a: losses.binary_kl(a, t64(np.ones((2, 3))), 2.0), (t64(np.random.randn(2, 3)).requires_grad_(),))


def probs(z, T):
    return torch.softmax(z / T, dim=1)


@pytest.fixture
def sample():
    g = torch.Generator().manual_seed(0)
    zs = (torch.randn(1, 7, generator=g, dtype=torch.float64) * 2).requires_grad_()
    zt = torch.randn(1, 7, generator=g, dtype=torch.float64) * 2
    return zs, zt, torch.tensor([3]), 4.0


def test_kd_gradient(sample):
    zs, zt, _, T = sample
    losses.kd_loss(zs, zt, T).backward()
    assert torch.allclose(zs.grad, T * (probs(zs, T) - probs(zt, T)).detach(), atol=1e-13)


def test_tckd_nckd_gradients_and_kd_split(sample):
    zs, zt, y, T = sample
    t = int(y)
    tckd, nckd = losses.decoupled_kd_terms(zs, zt, y, T)
    g_t, = torch.autograd.grad(tckd.sum(), zs, retain_graph=True)
    g_n, = torch.autograd.grad(nckd.sum(), zs)
    ps, pt = probs(zs, T).detach()[0], probs(zt, T)[0]
    other = [j for j in range(7) if j != t]
    hat_s, hat_t = ps[other] / (1 - ps[t]), pt[other] / (1 - pt[t])
    assert g_t[0, t].item() == pytest.approx(T * (ps[t] - pt[t]).item(), abs=1e-13)
    assert torch.allclose(g_t[0, other], T * hat_s * (pt[t] - ps[t]), atol=1e-13)
    assert g_n[0, t].item() == 0.0
    assert torch.allclose(g_n[0, other], T * (hat_s - hat_t), atol=1e-13)
    # KD = TCKD + (1 - p_t) NCKD, in value and in gradient
    kd = losses.kd_loss(zs, zt, T)
    assert kd.item() == pytest.approx((tckd + (1 - pt[t]) * nckd).item(), abs=1e-12)
    g_kd, = torch.autograd.grad(kd, zs)
    assert torch.allclose(g_kd, g_t + (1 - pt[t]) * g_n, atol=1e-13)
    # NCKD in raw probabilities: T/(1-ps_t) * (ps_j - pt_j (1-ps_t)/(1-pt_t))
    raw = T / (1 - ps[t]) * (ps[other] - pt[other] * (1 - ps[t]) / (1 - pt[t]))
    assert torch.allclose(g_n[0, other], raw, atol=1e-13)


def test_aekt_explicit_gradient_is_weighted(sample):
    zs, zt, y, T = sample
    t = int(y)
    alpha, beta = 1.5, 3.0
    losses.aekt_loss(zs, zt, y, alpha, beta, T, "teacher_over_student", w_max=1e9).backward()
    ps, pt = probs(zs, T).detach()[0], probs(zt, T)[0]
    w = pt[t] / ps[t]
    assert zs.grad[0, t].item() == pytest.approx((alpha * w * T * (ps[t] - pt[t])).item(), abs=1e-12)


def naive_dkd(zs, zt, y, alpha, beta, T):
    """DKD written out the textbook way (float64, -1000 masking is harmless there)."""
    gt = F.one_hot(y, zs.shape[1]).to(zs.dtype)
    ps, pt = probs(zs, T), probs(zt, T)
    bs = torch.stack([(ps * gt).sum(1), (ps * (1 - gt)).sum(1)], 1)
    bt = torch.stack([(pt * gt).sum(1), (pt * (1 - gt)).sum(1)], 1)
    tckd = (bt * (bt.log() - bs.log())).sum(1).mean() * T ** 2
    log_hs = F.log_softmax(zs / T - 1000.0 * gt, 1)
    hp_t = F.softmax(zt / T - 1000.0 * gt, 1)
    nckd = (hp_t * (torch.log(hp_t + 1e-300) - log_hs) * (1 - gt)).sum(1).mean() * T ** 2
    return alpha * tckd + beta * nckd


def test_aekt_ratio_none_equals_dkd():
    g = torch.Generator().manual_seed(5)
    zs, zt = torch.randn(16, 100, generator=g, dtype=torch.float64) * 3, torch.randn(16, 100, generator=g, dtype=torch.float64) * 3
    y = torch.randint(0, 100, (16,), generator=g)
    ref = naive_dkd(zs, zt, y, 1.0, 8.0, 4.0).item()
    assert losses.dkd_loss(zs, zt, y, 1.0, 8.0, 4.0).item() == pytest.approx(ref, abs=1e-6)
    assert losses.aekt_loss(zs, zt, y, 1.0, 8.0, 4.0, "none").item() == pytest.approx(ref, abs=1e-6)
    assert losses.aekt_loss(zs, zt, y, 1.0, 8.0, 4.0, "teacher_over_student").item() != pytest.approx(ref, abs=1e-6)


def test_ratio_weight_behaviour():
    g = torch.Generator().manual_seed(7)
    zs = (torch.randn(32, 10, generator=g) * 3).requires_grad_()
    zt = torch.randn(32, 10, generator=g) * 3
    y = torch.randint(0, 10, (32,), generator=g)
    w = losses.target_confidence_ratio(zs, zt, y, 4.0, "teacher_over_student", w_max=10.0)
    assert not w.requires_grad
    ps_t = probs(zs.detach(), 4.0).gather(1, y[:, None])[:, 0]
    pt_t = probs(zt, 4.0).gather(1, y[:, None])[:, 0]
    assert torch.allclose(w, (pt_t / ps_t).clamp(max=10.0), rtol=1e-5)
    assert w.max() <= 10.0 and w.min() >= 0.0
    inv = losses.target_confidence_ratio(zs, zt, y, 4.0, "student_over_teacher", w_max=1e6)
    assert torch.allclose(inv, ps_t / pt_t, rtol=1e-5)
    bm = losses.target_confidence_ratio(zs, zt, y, 4.0, "teacher_over_student", 10.0, "batch_mean")
    assert bm.mean().item() == pytest.approx(1.0, abs=1e-6)
    assert torch.allclose(bm, w / w.mean(), rtol=1e-6)
    assert torch.equal(losses.target_confidence_ratio(zs, zt, y, 4.0, "none"), torch.ones(32))
    # the loss's gradient treats w as a constant
    loss = losses.aekt_loss(zs, zt, y, 1.0, 0.0, 4.0, w_max=10.0)
    g1, = torch.autograd.grad(loss, zs)
    tckd, _ = losses.decoupled_kd_terms(zs, zt, y, 4.0)
    g2, = torch.autograd.grad((w * tckd).mean(), zs)
    assert torch.allclose(g1, g2, atol=1e-7)
    with pytest.raises(ValueError):
        losses.target_confidence_ratio(zs, zt, y, 4.0, "sideways")


ADVERSARIAL = [
    torch.tensor([[1e4, -1e4, 0.0], [0.0, 0.0, 0.0]]),
    torch.tensor([[100.0, 0.0], [-100.0, 100.0]]),             # C = 2
    torch.tensor([[88.0] + [-88.0] * 9, [-88.0] * 9 + [88.0]]),  # one-hot-like
]


@pytest.mark.parametrize("logits", ADVERSARIAL)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_losses_finite_on_adversarial_logits(logits, dtype):
    zs = logits.detach().clone().to(dtype).requires_grad_()
    zt = (-logits.detach().flip(1)).to(dtype)
    y = torch.zeros(logits.shape[0], dtype=torch.long)
    for fn in (lambda: losses.kd_loss(zs, zt, 4.0), lambda: losses.dkd_loss(zs, zt, y, 1.0, 8.0, 4.0),
               lambda: losses.binary_kl_norm(zs, zt, 2.0), lambda: losses.binary_kl(zs, zt, 2.0),
               lambda: losses.aekt_loss(zs, zt, y, 1.0, 8.0, 4.0),
               lambda: losses.aekt_loss(zs, zt, y, 1.0, 8.0, 4.0, "student_over_teacher", 10.0, "batch_mean")):
        zs.grad = None
        v = fn()
        v.backward()
        assert torch.isfinite(v), v
        assert torch.isfinite(zs.grad.float()).all()


def test_two_class_nckd_is_zero():
    zs, zt = torch.tensor([[3.0, -1.0]]), torch.tensor([[-2.0, 5.0]])
    _, nckd = losses.decoupled_kd_terms(zs, zt, torch.tensor([1]), 4.0)
    assert nckd.item() == 0.0


def _np_softmax(x, t):
    import numpy as np

    e = np.exp((x - x.max(axis=1, keepdims=True)) / t)
    return e / e.sum(axis=1, keepdims=True)


def test_logit_standardisation_and_kd_with_it_against_float64_formulas():
    """z-scores with the unbiased std and eps 1e-7 (the authors' public setting), then KD at T 2: against
    numpy in float64; scaling or shifting either side's logits changes nothing (the point of LS)."""
    import numpy as np

    from mdistiller_ext.methods import losses

    g = torch.Generator().manual_seed(0)
    zs, zt = torch.randn(6, 100, generator=g) * 3, torch.randn(6, 100, generator=g) * 8 + 2
    a, b = zs.double().numpy(), zt.double().numpy()
    za = (a - a.mean(1, keepdims=True)) / (1e-7 + a.std(1, ddof=1, keepdims=True))
    zb = (b - b.mean(1, keepdims=True)) / (1e-7 + b.std(1, ddof=1, keepdims=True))
    np.testing.assert_allclose(losses.standardize(zs).double().numpy(), za, rtol=1e-5, atol=1e-5)
    ps, pt = _np_softmax(za, 2.0), _np_softmax(zb, 2.0)
    want = (pt * (np.log(pt) - np.log(ps))).sum(1).mean() * 4.0
    got = losses.kd_loss(*losses.logit_stand(True, zs, zt), 2.0)
    assert got.item() == pytest.approx(want, rel=1e-4)
    shifted = losses.kd_loss(*losses.logit_stand(True, zs * 5 + 3, zt * 0.5 - 1), 2.0)
    assert shifted.item() == pytest.approx(want, rel=1e-4)
    assert losses.logit_stand(False, zs, zt) == (zs, zt)


@pytest.mark.parametrize("method", ["KD", "DKD", "AEKT"])
def test_logit_stand_option_reaches_each_softmax_method(method):
    """<NODE>.LOGIT_STAND True: the method's distillation loss is its loss on standardised logits."""
    from mdistiller_ext.host import registration
    from mdistiller_ext.host.standalone.models import cifar_model_dict
    from mdistiller_ext.methods import losses
    from mdistiller_ext.registry import get

    torch.manual_seed(0)
    student, teacher = cifar_model_dict["resnet8"][0](num_classes=10), cifar_model_dict["resnet8"][0](num_classes=10)
    x, y = torch.randn(4, 3, 32, 32), torch.arange(4)
    z_t = torch.randn(4, 10) * 6
    out = {}
    for on in (False, True):
        cfg = registration.base_cfg()
        cfg[method].LOGIT_STAND = on
        if method == "AEKT":
            cfg.AEKT.SERIAL = "none"
        d = get(method).distiller(student, teacher, cfg).train()
        out[on] = d.forward_train(x, y, teacher_logits=z_t, epoch=100)[1]["loss_kd"].item()
    zs = student(x)[0]
    if method == "KD":
        want = 0.9 * losses.kd_loss(losses.standardize(zs), losses.standardize(z_t), 4.0).item()
    elif method == "DKD":
        want = losses.dkd_loss(losses.standardize(zs), losses.standardize(z_t), y, 1.0, 8.0, 4.0).item()
    else:
        w, tckd, nckd = losses.aekt_terms(losses.standardize(zs), losses.standardize(z_t), y, 4.0, "teacher_over_student",
                                          2.0, "batch_mean")
        want = ((w * tckd).mean() + (8.0 * nckd).mean()).item()
    assert out[True] == pytest.approx(want, rel=1e-5) and out[True] != pytest.approx(out[False], rel=1e-3)


def test_dist_against_a_float64_formula():
    import numpy as np

    from mdistiller_ext.methods import losses

    g = torch.Generator().manual_seed(1)
    zs, zt = torch.randn(8, 10, generator=g) * 2, torch.randn(8, 10, generator=g) * 5
    ps, pt = _np_softmax(zs.double().numpy(), 4.0), _np_softmax(zt.double().numpy(), 4.0)

    def pearson_rows(a, b):
        a, b = a - a.mean(1, keepdims=True), b - b.mean(1, keepdims=True)
        return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-8)

    inter, intra = 1 - pearson_rows(ps, pt).mean(), 1 - pearson_rows(ps.T, pt.T).mean()
    want = 16.0 * (2.0 * inter + 0.5 * intra)
    assert losses.dist_loss(zs, zt, 4.0, 2.0, 0.5).item() == pytest.approx(want, rel=1e-4)
    assert losses.dist_loss(zt, zt, 4.0, 1.0, 1.0).item() == pytest.approx(0.0, abs=1e-5)  # identical: no loss


@pytest.mark.parametrize("weighted", [False, True])
def test_transformed_teacher_matching_against_a_float64_formula(weighted):
    import numpy as np

    from mdistiller_ext.methods import losses

    g = torch.Generator().manual_seed(2)
    zs, zt = torch.randn(6, 100, generator=g) * 2, torch.randn(6, 100, generator=g) * 6
    ps, pt = _np_softmax(zs.double().numpy(), 1.0), _np_softmax(zt.double().numpy(), 1.0)
    powered = pt ** 0.2
    norm = powered.sum(1)
    q = powered / norm[:, None]
    kl = (q * (np.log(q) - np.log(ps))).sum(1)
    want = (norm * kl).mean() if weighted else kl.mean()
    assert losses.transformed_teacher_loss(zs, zt, 0.2, weighted).item() == pytest.approx(want, rel=1e-4)
    # gamma = 1/T: TTM is KD with the temperature on the teacher only (KL of softmax(z_t / T) against softmax(z_s))
    kd_like = (_np_softmax(zt.double().numpy(), 5.0) * (np.log(_np_softmax(zt.double().numpy(), 5.0)) - np.log(ps))).sum(1).mean()
    assert losses.transformed_teacher_loss(zs, zt, 0.2).item() == pytest.approx(kd_like, rel=1e-4)
