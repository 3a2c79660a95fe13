"""``python -m recbole_mamba.atomics {kuairand,lfm1b} INPUT ... [options]``."""

import argparse
import sys

from recbole_mamba.atomics.convert import KUAIRAND_COLUMNS, SIGNALS, convert_kuairand, convert_lfm1b
from recbole_mamba.allocator import return_large_allocations
from recbole_mamba.atomics.errors import RawInputError

PROG = "python -m recbole_mamba.atomics"


def _int_list(text):
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def build_parser():
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--output-dir", default="dataset_atomics", help="default: dataset_atomics/")
    common.add_argument("--name", help="dataset name (default encodes the cut, e.g. kuairand-2k)")
    common.add_argument("--max-len", type=int, help="keep each user's last N interactions by time")
    common.add_argument("--min-user-len", type=int, default=0, help="drop users with fewer events")
    common.add_argument("--min-item-count", type=int, default=0,
                        help="drop items with fewer events (with --min-user-len: k-core to a fixed point)")
    sample = common.add_mutually_exclusive_group()
    sample.add_argument("--users", type=int, help="keep K users (deterministic by --seed)")
    sample.add_argument("--user-fraction", type=float, help="keep this fraction of users")
    common.add_argument("--seed", type=int, default=0, help="seed of the user sampling")
    common.add_argument("--drop-consecutive-duplicates", action="store_true",
                        help="drop an event whose item repeats the user's previous one")
    common.add_argument("--on-bad-lines", choices=["error", "skip"], default="error")

    parser = argparse.ArgumentParser(prog=PROG, description="Convert raw dumps to RecBole atomic files.")
    sub = parser.add_subparsers(dest="source", required=True)
    kuai = sub.add_parser("kuairand", parents=[common], help="KuaiRand log_*.csv files")
    kuai.add_argument("inputs", nargs="+", metavar="INPUT")
    kuai.add_argument("--signal", choices=list(SIGNALS), default="click")
    kuai.add_argument("--tabs", type=_int_list, help="keep these tab values, e.g. 0,1")
    kuai.add_argument("--user-features", help="user_features_27k.csv, written as the .user file")
    kuai.add_argument("--item-features", help="video_features_basic_27k.csv, written as the .item file")
    kuai.add_argument("--fields", default="", help=f"extra columns, e.g. play_time_ms,duration_ms (of: {', '.join(KUAIRAND_COLUMNS)})")
    lfm = sub.add_parser("lfm1b", parents=[common], help="LFM-1b_LEs.txt")
    lfm.add_argument("input", metavar="INPUT")
    lfm.add_argument("--item", choices=["track", "album", "artist"], default="track")
    lfm.add_argument("--users-file", help="LFM-1b_users.txt, written as the .user file")
    lfm.add_argument("--items-file", help="LFM-1b_tracks/albums/artists.txt (as --item), written as the .item file")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return_large_allocations()  # peak RSS follows live data (see recbole_mamba.allocator)
    common = dict(
        output_dir=args.output_dir, name=args.name, max_len=args.max_len,
        min_user_len=args.min_user_len, min_item_count=args.min_item_count, users=args.users,
        user_fraction=args.user_fraction, seed=args.seed,
        drop_consecutive_duplicates=args.drop_consecutive_duplicates, on_bad_lines=args.on_bad_lines,
    )
    try:
        if args.source == "kuairand":
            fields = [f.strip() for f in args.fields.split(",") if f.strip()]
            stats = convert_kuairand(args.inputs, signal=args.signal, tabs=args.tabs, fields=fields,
                                     user_features=args.user_features, item_features=args.item_features,
                                     **common)
        else:
            stats = convert_lfm1b(args.input, item=args.item, users_file=args.users_file,
                                  items_file=args.items_file, **common)
    except (RawInputError, ValueError, OSError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {stats['folder']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
