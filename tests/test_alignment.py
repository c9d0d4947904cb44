"""Gradient alignment: the projection's algebra on hand-made gradients, and the full step."""
import pytest
import torch

from mdistiller_ext.engine.alignment import aligned_backward, project_conflicting


def vecs(*xs):
    return [torch.tensor(x, dtype=torch.float64) for x in xs]


def test_conflicting_component_is_removed():
    g_ce = vecs([1.0, 0.0], [0.0])
    g_kd = vecs([-1.0, 1.0], [2.0])
    out = project_conflicting(g_kd, g_ce)
    # <g_kd, g_ce> = -1, ||g_ce||^2 = 1: g_kd + g_ce
    assert torch.equal(out[0], torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert torch.equal(out[1], torch.tensor([2.0], dtype=torch.float64))
    inner = sum((a * b).sum() for a, b in zip(out, g_ce))
    assert inner.item() == pytest.approx(0.0, abs=1e-15)


def test_agreeing_and_zero_gradients_are_untouched():
    g_kd = vecs([1.0, 2.0])
    assert torch.equal(project_conflicting(g_kd, vecs([3.0, 0.5]))[0], g_kd[0])
    assert torch.equal(project_conflicting(g_kd, vecs([0.0, 0.0]))[0], g_kd[0])


def test_global_inner_product_not_per_tensor():
    # each tensor alone conflicts, but globally they agree: nothing is projected
    g_ce = vecs([1.0], [1.0])
    g_kd = vecs([-1.0], [3.0])
    out = project_conflicting(g_kd, g_ce)
    assert torch.equal(out[0], g_kd[0]) and torch.equal(out[1], g_kd[1])


def test_aligned_backward_writes_projected_sum():
    torch.manual_seed(0)
    w = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    head = torch.randn(4, dtype=torch.float64, requires_grad=True)
    x = torch.randn(5, 3, dtype=torch.float64)
    feat = x @ w
    ce = (feat.sum(1) - 1).pow(2).mean()
    kd = -(feat @ head).mean() * 3  # reaches w and head; CE never reaches head
    g_ce = torch.autograd.grad(ce, [w, head], retain_graph=True, allow_unused=True)
    g_kd = torch.autograd.grad(kd, [w, head], retain_graph=True)
    g_ce = [g_ce[0], torch.zeros_like(head)]
    inner = sum((a * b).sum() for a, b in zip(g_kd, g_ce))
    coef = min(inner.item(), 0.0) / sum((a * a).sum() for a in g_ce).item()
    expected = [c + k - coef * c for c, k in zip(g_ce, g_kd)]
    total = aligned_backward({"loss_ce": ce, "loss_kd": kd}, [w, head])
    assert torch.allclose(w.grad, expected[0]) and torch.allclose(head.grad, expected[1])
    assert total.item() == pytest.approx((ce + kd).item())


def test_aligned_backward_needs_named_losses():
    p = torch.zeros(1, requires_grad=True)
    with pytest.raises(ValueError, match="loss_ce and loss_kd"):
        aligned_backward({"ce": p.sum()}, [p])
