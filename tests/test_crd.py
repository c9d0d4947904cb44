"""CRD on this engine: the NCE loss against a float64 formula, the negative sampler, mdistiller's CRD module
on the CPU with the same weights, memory and indices, the memory bank across processes, and exact resume."""
import math

import numpy as np
import pytest
import torch

from mdistiller_ext.data.contrast import NegativeSampler
from mdistiller_ext.host import registration
from mdistiller_ext.host.standalone.models import cifar_model_dict
from mdistiller_ext.methods import losses
from mdistiller_ext.methods.crd import CRD


def test_nce_loss_matches_an_independent_float64_formula():
    g = torch.Generator().manual_seed(0)
    scores = torch.rand(5, 9, generator=g, dtype=torch.float64) * 3
    n = 1000
    k = scores.shape[1] - 1
    want = 0.0
    for row in scores.tolist():
        want += math.log(row[0] / (row[0] + k / n + 1e-7))
        want += sum(math.log((k / n) / (s + k / n + 1e-7)) for s in row[1:])
    want = -want / scores.shape[0]
    assert losses.contrastive_nce_loss(scores.float(), n).item() == pytest.approx(want, rel=1e-5)
    # the gradient of the positive's score is negative (more similar: lower loss), of a negative's positive
    s = scores.clone().requires_grad_(True)
    losses.contrastive_nce_loss(s, n).backward()
    assert (s.grad[:, 0] < 0).all() and (s.grad[:, 1:] > 0).all()


def test_sampler_draws_the_positive_and_other_classes_negatives_without_replacement():
    labels = torch.arange(60) % 6  # 10 samples a class: 50 of other classes
    sampler = NegativeSampler(labels, k=20)
    index = torch.tensor([0, 7, 59, 33])
    rows = sampler.draw(index, torch.Generator().manual_seed(1))
    assert rows.shape == (4, 21) and torch.equal(rows[:, 0], index)
    for i, row in zip(index.tolist(), rows.tolist()):
        negatives = row[1:]
        assert all(labels[j] != labels[i] for j in negatives) and len(set(negatives)) == 20
    again = sampler.draw(index, torch.Generator().manual_seed(1))
    assert torch.equal(rows, again)  # a function of the generator's seed: a resumed epoch draws the same
    # more negatives than other-class samples: with replacement, still never the same class
    many = NegativeSampler(labels, k=80).draw(index, torch.Generator().manual_seed(2))
    assert all(labels[j] != labels[i] for i, row in zip(index.tolist(), many.tolist()) for j in row[1:])
    relax = NegativeSampler(labels, k=5, mode="relax").draw(index, torch.Generator().manual_seed(3))
    assert all(labels[row[0]] == labels[i] for i, row in zip(index.tolist(), relax.tolist()))


def _crd(num_data: int = 40, k: int = 7):
    torch.manual_seed(0)
    cfg = registration.base_cfg()
    cfg.CRD.FEAT.STUDENT_DIM = cfg.CRD.FEAT.TEACHER_DIM = 64
    cfg.CRD.NCE.K = k
    d = CRD(cifar_model_dict["resnet8"][0](num_classes=10), cifar_model_dict["resnet8"][0](num_classes=10), cfg, num_data)
    d.teacher.requires_grad_(False)
    return d, cfg


def _batch(num_data: int = 40, k: int = 7, b: int = 6):
    g = torch.Generator().manual_seed(4)
    x, labels = torch.randn(b, 3, 32, 32, generator=g), torch.arange(num_data) % 10
    index = torch.randperm(num_data, generator=g)[:b]
    contrast = NegativeSampler(labels, k).draw(index, g)
    return x, labels[index], index, contrast


@pytest.mark.host
def test_equal_to_mdistillers_crd_with_the_same_weights_memory_and_indices(monkeypatch):
    """mdistiller's CRD module on the CPU (its sampler's .cuda() made harmless): the same embedding weights,
    memory and indices give the same loss, the same gradients and the same updated memory."""
    import importlib

    host_crd = importlib.import_module("mdistiller.distillers.CRD")  # the module (the package exports the class)

    monkeypatch.setattr(host_crd.AliasMethod, "cuda", lambda self: None)
    ours, cfg = _crd()
    theirs = host_crd.CRD(ours.student, ours.teacher, cfg, 40)
    theirs.embed_s.linear.load_state_dict(ours.embed_s.linear.state_dict())
    theirs.embed_t.linear.load_state_dict(ours.embed_t.linear.state_dict())
    theirs.contrast.memory_v1.copy_(ours.memory.student_memory)
    theirs.contrast.memory_v2.copy_(ours.memory.teacher_memory)
    x, y, index, contrast = _batch()
    ours.train(), theirs.train()
    for m in ours.modules():  # BatchNorm on its running statistics: one forward of the shared student each
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()
    _, ours_losses = ours.forward_train(x, y, index=index, contrastive_index=contrast)
    ours_losses["loss_kd"].backward()
    ours_grads = [p.grad.clone() for p in ours.get_learnable_parameters() if p.grad is not None]
    for p in ours.parameters():
        p.grad = None
    _, their_losses = theirs.forward_train(x, y, index, contrast)
    their_losses["loss_kd"].sum().backward()
    their_grads = [p.grad for p in theirs.get_learnable_parameters() if p.grad is not None]
    assert ours_losses["loss_kd"].item() == pytest.approx(their_losses["loss_kd"].item(), rel=1e-5)
    assert len(ours_grads) == len(their_grads)
    for a, b in zip(ours_grads, their_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(ours.memory.student_memory, theirs.contrast.memory_v1, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours.memory.teacher_memory, theirs.contrast.memory_v2, rtol=1e-5, atol=1e-6)
    assert ours.memory.z[0].item() == pytest.approx(theirs.contrast.params[2].item(), rel=1e-5)


def test_memory_normalisation_and_momentum_update():
    d, _ = _crd()
    x, y, index, contrast = _batch()
    before = d.memory.student_memory.clone()
    d.train()
    d.forward_train(x, y, index=index, contrastive_index=contrast)
    after = d.memory.student_memory
    untouched = torch.ones(40, dtype=torch.bool)
    untouched[index] = False
    assert torch.equal(after[untouched], before[untouched])  # only the batch's rows move
    torch.testing.assert_close(after[index].norm(dim=1), torch.ones(len(index)))  # each renormalised
    assert (d.memory.z > 0).all()  # the normalisation constants are fixed on the first batch
    z = d.memory.z.clone()
    d.forward_train(x, y, index=index, contrastive_index=contrast)
    assert torch.equal(d.memory.z, z)  # and kept
    assert {"memory.student_memory", "memory.teacher_memory", "memory.z"} <= set(d.state_dict())  # checkpointed


def test_scores_are_fp32_under_bf16_autocast():
    d, _ = _crd()
    x, y, index, contrast = _batch()
    d.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        v = torch.nn.functional.normalize(torch.randn(6, 128), dim=1)
        out_s, out_t = d.memory.scores(v.bfloat16(), v.bfloat16(), contrast)
    assert out_s.dtype == out_t.dtype == torch.float32


def _prepared():
    """The distiller in training mode with BatchNorm on its running statistics (samples independent of how the
    batch is split across processes), and the batch."""
    d, _ = _crd()
    d.train()
    for m in d.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()
    return (d, *_batch())


def _worker(rank, world, init, out):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    from mdistiller_ext.engine.step import StepSetup, forward_backward

    dist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=world)
    d, x, y, index, contrast = _prepared()
    half = slice(rank * 3, rank * 3 + 3)
    forward_backward(DDP(d), x[half], y[half], 1, StepSetup(list(d.get_learnable_parameters())),
                     extra={"index": index[half], "contrastive_index": contrast[half]})
    if rank == 0:
        torch.save({"memory": d.memory.state_dict(), "grads": [p.grad for p in d.get_learnable_parameters()]}, out)
    dist.barrier()
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_processes_keep_one_memory_and_the_global_batchs_gradients(tmp_path):
    """Under torch.distributed every process updates the memory with every process's samples (all-gathered) and
    fixes the normalisation constants on the global batch: 2 gloo ranks end where one process on the whole batch does."""
    import torch.multiprocessing as mp

    from mdistiller_ext.engine.step import StepSetup, forward_backward

    out = tmp_path / "state.pt"
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(out)), nprocs=2, join=True)
    multi = torch.load(out, weights_only=True)
    d, x, y, index, contrast = _prepared()
    forward_backward(d, x, y, 1, StepSetup(list(d.get_learnable_parameters())),
                     extra={"index": index, "contrastive_index": contrast})
    for key, value in d.memory.state_dict().items():
        torch.testing.assert_close(multi["memory"][key], value, rtol=1e-5, atol=1e-6)
    for a, b in zip(multi["grads"], [p.grad for p in d.get_learnable_parameters()]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_crd_resumes_exactly_and_says_its_memory(tmp_path):
    """CRD on this engine without mdistiller: two epochs straight and one epoch then --resume give the same
    weights, memory and worklog numbers (the memory bank and the normalisation constants are checkpointed,
    the negatives drawn per (seed, epoch))."""
    from .test_resilience import ENV, cmd, make_work, write_cfg
    import subprocess

    work = make_work(tmp_path)
    over = dict(DISTILLER__TYPE="CRD", SOLVER__TRAINER="crd", CRD__NCE={"K": 64},
                CRD__FEAT={"STUDENT_DIM": 64, "TEACHER_DIM": 64}, SOLVER__EPOCHS=2)
    straight = subprocess.run(cmd(write_cfg(work, "crd_straight", **over)), cwd=work, env=ENV, capture_output=True, text=True)
    assert straight.returncode == 0, straight.stderr
    assert "CRD adds 16,640 training-only parameters" in straight.stdout
    cfg = write_cfg(work, "crd_resumed", **dict(over, SOLVER__EPOCHS=1))
    assert subprocess.run(cmd(cfg), cwd=work, env=ENV, capture_output=True, text=True).returncode == 0
    write_cfg(work, "crd_resumed", **over)
    resumed = subprocess.run(cmd(cfg, "--resume"), cwd=work, env=ENV, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    from mdistiller_ext.runs import worklog

    runs = [work / "out/cifar10_dhkd" / n for n in ("crd_straight", "crd_resumed")]
    a, b = (torch.load(r / "latest", weights_only=True)["model"] for r in runs)
    assert a.keys() == b.keys() and "memory.student_memory" in a and all(torch.equal(a[k], b[k]) for k in a)
    la, lb = (worklog.read(str(r / "worklog.txt")) for r in runs)
    assert la.epochs == lb.epochs and list(la.epochs) == [1, 2]
