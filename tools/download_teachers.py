"""Opt-in: fetch mdistiller's released CIFAR-100 teachers (cifar_teachers.tar), verify, unpack safely.

python tools/download_teachers.py --sha256 <expected>            # download, verify, extract
python tools/download_teachers.py --from-file cifar_teachers.tar --sha256 <expected>
python tools/download_teachers.py --from-file cifar_teachers.tar --print-sha256

The archive is extracted into <dest>/cifar_teachers/... (default dest: ./download_ckpts), the
layout tools/train.py looks in. Nothing in it is executed: members with absolute paths, "..",
links, or anything but plain files and folders are refused, and checkpoints are later read with
torch.load(weights_only=True).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mdistiller_ext.runs.archive import RELEASE_URL, download, safe_extract, sha256_of  # noqa: E402
from mdistiller_ext.errors import UserError  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--from-file", help="an already downloaded archive (skips the download)")
    ap.add_argument("--url", default=RELEASE_URL)
    ap.add_argument("--sha256", help="expected sha256 of the archive (required to extract)")
    ap.add_argument("--print-sha256", action="store_true", help="only print the archive's sha256")
    ap.add_argument("--dest", default="./download_ckpts")
    args = ap.parse_args()
    try:
        path = args.from_file or download(args.url, os.path.join(args.dest, "cifar_teachers.tar"))
        digest = sha256_of(path)
        if args.print_sha256:
            print(digest)
            return 0
        if not args.sha256:
            raise UserError(f"refusing to extract {path} without --sha256 (its sha256 is {digest}; compare it with a "
                            "checksum you trust)")
        if digest != args.sha256.lower():
            raise UserError(f"{path} has sha256 {digest}, expected {args.sha256}; the file is corrupted or not the release")
        files = safe_extract(path, args.dest)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"extracted {len(files)} files into {args.dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
