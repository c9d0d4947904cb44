"""Write every shipped config from the method registry (each method's recipe, in mdistiller_ext/methods/).

python tools/make_configs.py           # (re)write configs/
python tools/make_configs.py --check   # exit 1 if configs/ differs from what the recipes give
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mdistiller_ext.generate import write_all  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--out", default=ROOT, help="configs folder (default: this checkout's configs/)")
    args = ap.parse_args()
    result = write_all(args.out, args.check)
    stale = result["stale"]
    if args.check and stale:
        print(f"{len(stale)} configs differ from the recipes, e.g. {stale[0]}; run python tools/make_configs.py")
        return 1
    print(f"{len(result['all'])} configs, {len(stale)} {'stale' if args.check else 'written'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
