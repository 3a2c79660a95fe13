"""``python -m recbole_mamba.atomics {kuairand,lfm1b} INPUT ... [options]``,
``python -m recbole_mamba.atomics synthetic [options]`` and
``python -m recbole_mamba.atomics check DIR/NAME``."""

import argparse
import sys

from recbole_mamba.allocator import return_large_allocations
from recbole_mamba.atomics.convert import KUAIRAND_COLUMNS, SIGNALS, convert_kuairand, convert_lfm1b
from recbole_mamba.atomics.options import ConvertOptions
from recbole_mamba.atomics.synthetic import DEFAULT_LAGS, write_synthetic
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

    parser = argparse.ArgumentParser(prog=PROG, description="Convert raw dumps to RecBole atomic files, or check "
                                                             "atomic files.")
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
    syn = sub.add_parser("synthetic", help="generated data with a planted long-range rule (see docs/converters.md)")
    syn.add_argument("--users", type=int, default=1000)
    syn.add_argument("--length", type=int, default=200, help="interactions per user")
    syn.add_argument("--items", type=int, default=500)
    syn.add_argument("--lags", type=_int_list, default=list(DEFAULT_LAGS),
                     help="each user's next item is revealed by the item this many steps back, e.g. 4,16,64")
    syn.add_argument("--noise", type=float, default=0.1, help="probability that an item is uniform instead")
    syn.add_argument("--seed", type=int, default=0)
    syn.add_argument("--name", help="dataset name (default synthetic-<lags>)")
    syn.add_argument("--output-dir", default="dataset_atomics")
    check = sub.add_parser("check", help="check an atomic dataset (DIR/NAME) without training: its files, "
                                         "its Table-1 row, the users each protocol keeps")
    check.add_argument("folder", metavar="DIR/NAME")
    check.add_argument("--model", default="MambaRec", help="the model whose defaults the check reads (default MambaRec)")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return_large_allocations()  # peak RSS follows live data (see recbole_mamba.allocator)
    try:
        if args.source == "check":
            from recbole_mamba.atomics.dataset_check import check_dataset

            lines, trains = check_dataset(args.folder, args.model)
            print("\n".join(lines))
            return 0 if trains else 2
        if args.source == "synthetic":
            stats = write_synthetic(args.output_dir, users=args.users, length=args.length, items=args.items,
                                    lags=args.lags, noise=args.noise, seed=args.seed, name=args.name)
            print(f"wrote {stats['folder']}")
            return 0
        options = ConvertOptions.values_of(args)
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
