"""``python -m recbole_mamba.atomics {kuairand,lfm1b} INPUT ... [options]``."""

import argparse
import sys

from recbole_mamba.allocator import return_large_allocations
from recbole_mamba.atomics.convert import KUAIRAND_COLUMNS, SIGNALS, convert_kuairand, convert_lfm1b
from recbole_mamba.atomics.options import ConvertOptions
from recbole_mamba.errors import InputError

PROG = "python -m recbole_mamba.atomics"


def _int_list(text):
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def build_parser():
    common = argparse.ArgumentParser(add_help=False)
    ConvertOptions.add_arguments(common)

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
    options = ConvertOptions.values_of(args)
    try:
        if args.source == "kuairand":
            fields = [f.strip() for f in args.fields.split(",") if f.strip()]
            stats = convert_kuairand(args.inputs, signal=args.signal, tabs=args.tabs, fields=fields,
                                     user_features=args.user_features, item_features=args.item_features,
                                     **options)
        else:
            stats = convert_lfm1b(args.input, item=args.item, users_file=args.users_file,
                                  items_file=args.items_file, **options)
    except (InputError, OSError) as e:  # OSError: an input that cannot be read, named in the message
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {stats['folder']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
