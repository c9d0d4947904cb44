"""Downloading and unpacking archives without trusting them."""
import hashlib
import os
import tarfile
import urllib.request
from typing import List

from mdistiller_ext.errors import UserError

RELEASE_URL = "https://github.com/megvii-research/mdistiller/releases/download/v0.1/cifar_teachers.tar"


def sha256_of(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download(url: str, dest: str) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
    tmp = dest + ".part"
    try:
        with urllib.request.urlopen(url, timeout=60) as r, open(tmp, "wb") as f:
            for chunk in iter(lambda: r.read(1 << 20), b""):
                f.write(chunk)
    except OSError as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise UserError(f"download of {url} failed ({getattr(e, 'reason', e)}); download it by hand and pass --from-file") from None
    os.replace(tmp, dest)
    return dest


def _check_member(m: tarfile.TarInfo, root: str) -> None:
    name = m.name
    if os.path.isabs(name) or name.startswith(("/", "\\")) or ".." in name.replace("\\", "/").split("/"):
        raise UserError(f"archive member {name!r} points outside the target folder; refusing to extract")
    if not (m.isfile() or m.isdir()):
        kind = "link" if (m.issym() or m.islnk()) else "special file"
        raise UserError(f"archive member {name!r} is a {kind}; refusing to extract")
    target = os.path.realpath(os.path.join(root, name))
    if os.path.commonpath([target, root]) != root:
        raise UserError(f"archive member {name!r} resolves outside the target folder; refusing to extract")


def safe_extract(archive: str, dest: str) -> List[str]:
    """Extract only plain files and folders that stay inside ``dest``; check every member first."""
    root = os.path.realpath(dest)
    os.makedirs(root, exist_ok=True)
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            for m in members:
                _check_member(m, root)
            # Python's own "data" filter (where available) re-checks the same rules
            extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(root, members=members, **extra)
    except tarfile.TarError as e:
        raise UserError(f"cannot read archive {archive}: {e}") from None
    return [m.name for m in members if m.isfile()]
