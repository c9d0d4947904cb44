"""Safe loading, safe extraction and numerics that hold for any input (property-based)."""
import hashlib
import io
import os
import subprocess
import sys
import tarfile

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from mdistiller_ext.methods import losses
from mdistiller_ext.runs.archive import safe_extract
from mdistiller_ext.runs.checkpoint import load_into, load_safe, save_atomic
from mdistiller_ext.errors import UserError
from mdistiller_ext.host.standalone.models import cifar_model_dict

from .conftest import ROOT


def one_line_error(fn, *args):
    with pytest.raises(UserError) as e:
        fn(*args)
    assert "\n" not in str(e.value)
    return str(e.value)


@pytest.fixture
def good_ckpt(tmp_path):
    path = tmp_path / "good.pth"
    save_atomic({"model": cifar_model_dict["resnet8"][0](num_classes=10).state_dict()}, str(path))
    return path


def test_atomic_save_leaves_no_temp_files(tmp_path, good_ckpt):
    assert [p.name for p in tmp_path.iterdir()] == ["good.pth"]
    assert "model" in load_safe(str(good_ckpt))


def test_truncated_and_corrupted_checkpoints(tmp_path, good_ckpt):
    data = good_ckpt.read_bytes()
    (tmp_path / "trunc.pth").write_bytes(data[: len(data) // 2])
    (tmp_path / "noise.pth").write_bytes(os.urandom(4096))
    for name in ("trunc.pth", "noise.pth"):
        msg = one_line_error(load_safe, str(tmp_path / name))
        assert name in msg and "cannot load checkpoint" in msg
    assert "not found" in one_line_error(load_safe, str(tmp_path / "absent.pth"))


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"model": Payload(str(marker))}, path)
    msg = one_line_error(load_safe, str(path))
    assert "evil.pth" in msg
    assert not marker.exists()


def test_wrong_architecture_and_classes(tmp_path, good_ckpt):
    msg = one_line_error(load_into, cifar_model_dict["wrn_16_1"][0](num_classes=10), str(good_ckpt), "teacher wrn_16_1")
    assert "good.pth" in msg and "wrong architecture" in msg
    msg = one_line_error(load_into, cifar_model_dict["resnet8"][0](num_classes=100), str(good_ckpt), "teacher resnet8")
    assert "fc.weight" in msg and "num_classes" in msg


def add(tar, name, data=b"x", kind=tarfile.REGTYPE, linkname=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, linkname, len(data) if kind == tarfile.REGTYPE else 0
    tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


@pytest.mark.parametrize("name,kind,link,reason", [
    ("../escape.pth", tarfile.REGTYPE, "", "outside"),
    ("/abs/escape.pth", tarfile.REGTYPE, "", "outside"),
    ("cifar_teachers/ok/../../../escape.pth", tarfile.REGTYPE, "", "outside"),
    ("cifar_teachers/link", tarfile.SYMTYPE, "/etc/passwd", "link"),
    ("cifar_teachers/hard", tarfile.LNKTYPE, "../../etc/passwd", "link"),
    ("cifar_teachers/dev", tarfile.CHRTYPE, "", "special"),
])
def test_hostile_archives_are_refused(tmp_path, name, kind, link, reason):
    archive = tmp_path / "bad.tar"
    with tarfile.open(archive, "w") as tar:
        add(tar, "cifar_teachers/resnet56_vanilla/ckpt_epoch_240.pth")
        add(tar, name, kind=kind, linkname=link)
    dest = tmp_path / "dest"
    msg = one_line_error(safe_extract, str(archive), str(dest))
    assert reason in msg
    assert not (tmp_path / "escape.pth").exists()
    assert not any(dest.rglob("*.pth"))  # nothing is extracted when any member is bad


def test_download_tool_verifies_checksum(tmp_path):
    archive = tmp_path / "cifar_teachers.tar"
    with tarfile.open(archive, "w") as tar:
        add(tar, "cifar_teachers/resnet56_vanilla/ckpt_epoch_240.pth", b"weights")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    tool = [sys.executable, str(ROOT / "tools/download_teachers.py"), "--from-file", str(archive), "--dest", str(tmp_path / "d")]
    no_sum = subprocess.run(tool, capture_output=True, text=True)
    assert no_sum.returncode == 2 and digest in no_sum.stderr
    wrong = subprocess.run(tool + ["--sha256", "0" * 64], capture_output=True, text=True)
    assert wrong.returncode == 2 and "expected" in wrong.stderr
    ok = subprocess.run(tool + ["--sha256", digest], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "d/cifar_teachers/resnet56_vanilla/ckpt_epoch_240.pth").read_bytes() == b"weights"


finite = st.floats(min_value=-1e4, max_value=1e4, allow_nan=False, allow_infinity=False, width=32)


@st.composite
def logits_pair(draw):
    n = draw(st.integers(1, 4))
    c = draw(st.integers(2, 12))
    zs = draw(arrays("float32", (n, c), elements=finite))
    zt = draw(arrays("float32", (n, c), elements=finite))
    y = draw(arrays("int64", (n,), elements=st.integers(0, c - 1)))
    dtype = draw(st.sampled_from([torch.float32, torch.bfloat16]))
    return torch.from_numpy(zs).to(dtype), torch.from_numpy(zt).to(dtype), torch.from_numpy(y)


@settings(max_examples=150, deadline=None)
@given(logits_pair(), st.floats(0.5, 8.0))
def test_dhkd_losses_finite_and_bkn_gradient_bounded(pair, tau):
    zs, zt, _ = pair
    zs = zs.clone().requires_grad_()
    v = losses.binary_kl_norm(zs, zt, tau)
    v.backward()
    assert torch.isfinite(v) and torch.isfinite(zs.grad.float()).all()
    bound = tau / (2 * zs.shape[0])
    # exact in real arithmetic; storing the gradient in the input's dtype may round up by half an ulp
    assert zs.grad.float().abs().max().item() <= bound * (1 + torch.finfo(zs.dtype).eps)
    zs.grad = None
    b = losses.binary_kl(zs, zt, tau)
    b.backward()
    assert torch.isfinite(b) and torch.isfinite(zs.grad.float()).all()


@settings(max_examples=150, deadline=None)
@given(logits_pair(), st.sampled_from(list(losses.RATIO_MODES)), st.sampled_from(list(losses.RATIO_NORMS)), st.floats(0.5, 8.0))
def test_aekt_loss_finite_for_any_finite_logits(pair, mode, norm, T):
    zs, zt, y = pair
    zs = zs.clone().requires_grad_()
    v = losses.aekt_loss(zs, zt, y, 1.0, 8.0, T, mode, 10.0, norm)
    v.backward()
    assert torch.isfinite(v) and v.item() >= -1e-3
    assert torch.isfinite(zs.grad.float()).all()
