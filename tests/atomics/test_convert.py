"""Converters against an independent pandas computation on small raw files in the real formats."""

import gzip
import json
import os
import re
import subprocess
import sys
import zipfile

import numpy as np
import pandas as pd
import pytest

from recbole_mamba.atomics import RawInputError, convert_kuairand, convert_lfm1b
from recbole_mamba.atomics.convert import KUAIRAND_COLUMNS
from recbole_mamba.config import RecboleMambaConfig


def write_lfm1b(path, n=400, users=6, seed=0):
    """Random LFM-1b_LEs rows in shuffled order, with timestamp ties and repeated tracks."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "user_id": rng.integers(1, users + 1, n),
        "artist_id": rng.integers(1, 5, n),
        "album_id": rng.integers(1, 9, n),
        "track_id": rng.integers(1, 15, n),
        "timestamp": rng.integers(1_000, 1_060, n),  # many ties
    })
    frame.to_csv(path, sep="\t", header=False, index=False)
    return frame


def expected(frame, user, item, time, max_len=None, dedup=False, min_item=0, min_user=0):
    """Independent computation: stable sort, dedup, last N, k-core."""
    df = pd.DataFrame({"user": frame[user], "item": frame[item], "time": frame[time]})
    df = df.sort_values(["user", "time"], kind="stable")
    if dedup:
        prev_same = (df["user"] == df["user"].shift()) & (df["item"] == df["item"].shift())
        df = df[~prev_same]
    if max_len:
        df = df.groupby("user", sort=False).tail(max_len)
    while True:
        before = len(df)
        if min_item:
            df = df[df.groupby("item")["item"].transform("size") >= min_item]
        if min_user:
            df = df[df.groupby("user")["user"].transform("size") >= min_user]
        if len(df) == before:
            return df.reset_index(drop=True)


def read_inter(folder, name):
    df = pd.read_csv(os.path.join(folder, f"{name}.inter"), sep="\t")
    return df.rename(columns=lambda c: c.split(":")[0])


@pytest.mark.parametrize("opts", [
    {},
    {"max_len": 7},
    {"max_len": 7, "drop_consecutive_duplicates": True},
    {"max_len": 45, "min_item_count": 12, "min_user_len": 30},
])
def test_lfm1b_matches_pandas(tmp_path, monkeypatch, opts):
    import recbole_mamba.atomics.cut as cut

    monkeypatch.setattr(cut, "PENDING_ROWS", 50)  # many merges on a small file
    frame = write_lfm1b(tmp_path / "LFM-1b_LEs.txt")
    stats = convert_lfm1b(str(tmp_path / "LFM-1b_LEs.txt"), output_dir=str(tmp_path / "out"), name="lfm", **opts)
    got = read_inter(stats["folder"], "lfm")
    want = expected(frame, "user_id", "track_id", "timestamp", opts.get("max_len"),
                    opts.get("drop_consecutive_duplicates", False), opts.get("min_item_count", 0),
                    opts.get("min_user_len", 0))
    assert len(want) > 0
    assert got["user_id"].tolist() == want["user"].tolist()
    assert got["item_id"].tolist() == want["item"].tolist()
    assert got["timestamp"].tolist() == want["time"].tolist()
    assert stats["interactions"] == len(want) and stats["users"] == want["user"].nunique()
    assert stats["max_seq_len"] == want.groupby("user").size().max()


def test_lfm1b_item_choice_name_side_files_and_yaml(tmp_path):
    frame = write_lfm1b(tmp_path / "les.txt")
    (tmp_path / "users.txt").write_text(
        "user_id\tcountry\tage\tgender\tplaycount\tregistered_unixtime\n"
        + "".join(f"{u}\tAT\t{20 + u}\tm\t{100 * u}\t1100000000\n" for u in range(1, 10))
    )
    (tmp_path / "artists.txt").write_text("".join(f"{a}\tBand {a}\n" for a in range(1, 7)))
    stats = convert_lfm1b(str(tmp_path / "les.txt"), output_dir=str(tmp_path / "out"), item="artist",
                          max_len=2000, users_file=str(tmp_path / "users.txt"),
                          items_file=str(tmp_path / "artists.txt"))
    assert os.path.basename(stats["folder"]) == "lfm1b-artist-2k"
    got = read_inter(stats["folder"], "lfm1b-artist-2k")
    assert sorted(got["item_id"].unique()) == sorted(frame["artist_id"].unique())
    users = pd.read_csv(os.path.join(stats["folder"], "lfm1b-artist-2k.user"), sep="\t")
    assert list(users.columns) == ["user_id:token", "country:token", "age:float", "gender:token",
                                   "playcount:float", "registered_unixtime:float"]
    assert sorted(users["user_id:token"]) == sorted(frame["user_id"].unique())
    items = pd.read_csv(os.path.join(stats["folder"], "lfm1b-artist-2k.item"), sep="\t")
    assert list(items.columns) == ["item_id:token", "artist_name:token"]
    assert items["item_id:token"].tolist() == sorted(frame["artist_id"].unique())
    yaml_text = open(os.path.join(stats["folder"], "lfm1b-artist-2k.yaml")).read()
    assert "inter: [user_id, item_id, timestamp]" in yaml_text and "user: [user_id, country" in yaml_text
    assert "item: [item_id, artist_name]" in yaml_text
    assert "\nMAX_ITEM_LIST_LENGTH: 1997\n" in yaml_text  # the cut less valid, test and the last training target
    assert json.load(open(os.path.join(stats["folder"], "stats.json")))["options"]["item"] == "artist"


def test_the_official_multi_file_lfm1b_zip_converts_as_its_files(tmp_path):
    """LFM-1b.zip as distributed: many files in a folder; the events, users and items are read
    from it by name, byte for byte as from the extracted files."""
    write_lfm1b(tmp_path / "LFM-1b_LEs.txt")
    (tmp_path / "LFM-1b_users.txt").write_text(
        "user_id\tcountry\tage\n" + "".join(f"{u}\tAT\t{20 + u}\n" for u in range(1, 10)))
    (tmp_path / "LFM-1b_artists.txt").write_text("".join(f"{a}\tBand {a}\n" for a in range(1, 7)))
    with zipfile.ZipFile(tmp_path / "LFM-1b.zip", "w") as z:
        z.writestr("LFM-1b/", b"")
        for member in ("LFM-1b_artists.txt", "LFM-1b_LEs.txt", "LFM-1b_users.txt"):
            z.write(tmp_path / member, f"LFM-1b/{member}")
        z.writestr("LFM-1b/LFM-1b_LEs.mat", b"\x00MATLAB")
        z.writestr("LFM-1b/LFM-1b_tracks.txt", "1\tSong\t1\n")
    outputs = []
    for source in ("LFM-1b_LEs.txt", "LFM-1b.zip"):
        users, items = (("LFM-1b_users.txt", "LFM-1b_artists.txt") if source.endswith(".txt")
                        else ("LFM-1b.zip", "LFM-1b.zip"))
        stats = convert_lfm1b(str(tmp_path / source), output_dir=str(tmp_path / source[-3:]), name="d",
                              item="artist", max_len=20, users_file=str(tmp_path / users),
                              items_file=str(tmp_path / items))
        outputs.append([open(os.path.join(stats["folder"], f"d.{suffix}"), "rb").read()
                        for suffix in ("inter", "user", "item", "yaml")])
    assert outputs[1] == outputs[0] and all(outputs[0])

    # a zip of many files without the events: one line naming its files, exit 2, nothing written
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as z:
        z.writestr("a/LFM-1b_users.txt", "user_id\n1\n")
        z.writestr("a/notes.txt", "x")
    proc = cli("-m", "recbole_mamba.atomics", "lfm1b", "other.zip", "--output-dir", "out", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "python -m recbole_mamba.atomics: error: other.zip: a zip archive of 2 files with no file named "
        "LFM-1b_LEs.txt: a/LFM-1b_users.txt, a/notes.txt"]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("members, member, message", [
    ([], None, "a zip archive of 0 files (one expected): none"),
    (["x.csv", "y.csv"], None, "a zip archive of 2 files (one expected): x.csv, y.csv"),
    (["a/e.txt", "b/e.txt", "c.txt"], "e.txt", "a zip archive of 3 files with 2 files named e.txt: a/e.txt, b/e.txt, c.txt"),
    ([f"f{i:02}" for i in range(14)], "e.txt",
     "a zip archive of 14 files with no file named e.txt: " + ", ".join(f"f{i:02}" for i in range(12)) + " and 2 more"),
])
def test_a_zip_without_its_one_file_is_refused_naming_its_files(tmp_path, members, member, message):
    from recbole_mamba.atomics.reader import open_binary

    with zipfile.ZipFile(tmp_path / "a.zip", "w") as z:
        for name in members:
            z.writestr(name, "1")
    with pytest.raises(RawInputError) as err:
        open_binary(str(tmp_path / "a.zip"), member)
    assert str(err.value) == f"{tmp_path / 'a.zip'}: {message}"


def write_kuairand(path, rows, header=KUAIRAND_COLUMNS):
    lines = [",".join(header)] + [",".join(str(row.get(c, 0)) for c in header) for row in rows]
    path.write_text("\n".join(lines) + "\n")


def kuai_rows(n, seed, users=4):
    rng = np.random.default_rng(seed)
    return [
        {"user_id": int(rng.integers(0, users)), "video_id": int(rng.integers(0, 20)),
         "time_ms": int(1_649_000_000_000 + rng.integers(0, 10**7)), "is_click": int(rng.integers(0, 2)),
         "long_view": int(rng.integers(0, 2)), "tab": int(rng.integers(0, 3)),
         "play_time_ms": int(rng.integers(0, 9999))}
        for _ in range(n)
    ]


@pytest.mark.parametrize("signal,flag", [("click", "is_click"), ("long_view", "long_view"), ("all", None)])
def test_kuairand_signals_several_files_tabs_fields(tmp_path, signal, flag):
    parts = [kuai_rows(150, 1), kuai_rows(150, 2), kuai_rows(60, 3)]
    names = ["log_standard_4_08_to_4_21_27k_part1.csv", "log_standard_4_08_to_4_21_27k_part2.csv",
             "log_random_4_22_to_5_08_27k.csv"]
    for rows, name in zip(parts, names):
        write_kuairand(tmp_path / name, rows)
    stats = convert_kuairand([str(tmp_path / n) for n in names], output_dir=str(tmp_path / "out"),
                             signal=signal, tabs=[0, 2], fields=["play_time_ms"], max_len=25)
    assert os.path.basename(stats["folder"]) == ("kuairand-25" if signal == "click" else f"kuairand-{signal.replace('_', '')}-25")
    raw = pd.concat([pd.read_csv(tmp_path / n) for n in names], ignore_index=True)  # file order
    raw = raw[raw["tab"].isin([0, 2])]
    if flag:
        raw = raw[raw[flag] == 1]
    want = expected(raw.assign(ts=raw["time_ms"] / 1000), "user_id", "video_id", "ts", max_len=25)
    got = read_inter(stats["folder"], os.path.basename(stats["folder"]))
    assert got["user_id"].tolist() == want["user"].tolist()
    assert got["item_id"].tolist() == want["item"].tolist()
    assert np.allclose(got["timestamp"], want["time"], rtol=0, atol=1e-6)
    assert "play_time_ms:float" in open(os.path.join(stats["folder"], os.path.basename(stats["folder"]) + ".inter")).readline()


def test_kuairand_zero_is_not_a_click(tmp_path):
    """The public KuaiRand script filters with `if is_click:` on a string, keeping "0" rows."""
    rows = [{"user_id": 1, "video_id": v, "time_ms": 1000 * v, "is_click": v % 2} for v in range(10)]
    write_kuairand(tmp_path / "log.csv", rows)
    stats = convert_kuairand(str(tmp_path / "log.csv"), output_dir=str(tmp_path / "out"), name="k")
    assert read_inter(stats["folder"], "k")["item_id"].tolist() == [1, 3, 5, 7, 9]


def test_compressed_inputs_and_byte_identical_reruns(tmp_path):
    write_lfm1b(tmp_path / "LFM-1b_LEs.txt")
    raw = (tmp_path / "LFM-1b_LEs.txt").read_bytes()
    with gzip.open(tmp_path / "les.txt.gz", "wb") as f:
        f.write(raw)
    with zipfile.ZipFile(tmp_path / "LFM-1b.zip", "w") as z:
        z.writestr("LFM-1b/LFM-1b_LEs.txt", raw)
    outputs = []
    for i, source in enumerate(["LFM-1b_LEs.txt", "les.txt.gz", "LFM-1b.zip", "LFM-1b_LEs.txt"]):
        stats = convert_lfm1b(str(tmp_path / source), output_dir=str(tmp_path / f"out{i}"), name="d", max_len=9)
        outputs.append((open(os.path.join(stats["folder"], "d.inter"), "rb").read(),
                        open(os.path.join(stats["folder"], "d.yaml"), "rb").read()))
    assert all(o == outputs[0] for o in outputs)
    # the same output folder, converted again: byte-identical, stats included
    first = open(os.path.join(tmp_path, "out0", "d", "stats.json"), "rb").read()
    convert_lfm1b(str(tmp_path / "LFM-1b_LEs.txt"), output_dir=str(tmp_path / "out0"), name="d", max_len=9)
    assert open(os.path.join(tmp_path, "out0", "d", "stats.json"), "rb").read() == first


def test_user_sampling_is_deterministic(tmp_path):
    write_lfm1b(tmp_path / "les.txt", users=40, n=2000)
    def users_of(**opts):
        stats = convert_lfm1b(str(tmp_path / "les.txt"), output_dir=str(tmp_path / "out"), name="s", **opts)
        return sorted(read_inter(stats["folder"], "s")["user_id"].unique())
    picked = users_of(users=10, seed=3)
    assert len(picked) == 10 and users_of(users=10, seed=3) == picked and users_of(users=10, seed=4) != picked
    half = users_of(user_fraction=0.5, seed=1)
    assert 8 <= len(half) <= 32 and users_of(user_fraction=0.5, seed=1) == half


BAD_LFM = [
    ("empty", "", None, "empty file"),
    ("non-numeric user", "1\t2\t3\t4\t5\nx1\t2\t3\t4\t5\n", 2, "field 'user_id': 'x1' is not an integer"),
    ("non-numeric timestamp", "1\t2\t3\t4\t5\n1\t2\t3\t4\t2020-01-01\n", 2, "field 'timestamp': '2020-01-01' is not an integer"),
    ("too many fields", "1\t2\t3\t4\t5\n1\t2\t3\t4\t5\t6\n", 2, "expected 5 fields"),
    ("too few fields", "1\t2\t3\t4\t5\n1\t2\t3\t4\n1\t2\t3\t4\t5\n", 2, "expected 5 fields"),
    ("truncated last line", "1\t2\t3\t4\t5\n1\t2\t3", 2, "found 3"),
    ("wrong separator", "1,2,3,4,5\n", 1, "separated by '\\t', found 1"),
]


@pytest.mark.parametrize("case,content,line,message", BAD_LFM, ids=[c[0] for c in BAD_LFM])
def test_bad_lfm1b_lines_are_reported_and_nothing_is_written(tmp_path, case, content, line, message):
    (tmp_path / "les.txt").write_text(content)
    with pytest.raises(RawInputError) as err:
        convert_lfm1b(str(tmp_path / "les.txt"), output_dir=str(tmp_path / "out"), name="bad")
    text = str(err.value)
    assert str(tmp_path / "les.txt") in text and message in text
    if line is not None:
        assert f"line {line}" in text
    assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")


def test_bad_kuairand_headers(tmp_path):
    misspelt = [c if c != "time_ms" else "time_msec" for c in KUAIRAND_COLUMNS]
    write_kuairand(tmp_path / "a.csv", kuai_rows(3, 0), header=misspelt)
    with pytest.raises(RawInputError, match=r"a.csv line 1, field 'time_ms': header has no column 'time_ms' \(found 'time_msec'\)"):
        convert_kuairand(str(tmp_path / "a.csv"), output_dir=str(tmp_path / "out"))
    (tmp_path / "b.csv").write_text("\t".join(KUAIRAND_COLUMNS) + "\n")
    with pytest.raises(RawInputError, match="comma-separated"):
        convert_kuairand(str(tmp_path / "b.csv"), output_dir=str(tmp_path / "out"))
    (tmp_path / "c.csv").write_text("")
    with pytest.raises(RawInputError, match="c.csv line 1: empty file"):
        convert_kuairand(str(tmp_path / "c.csv"), output_dir=str(tmp_path / "out"))


def test_skip_mode_reports_and_continues(tmp_path):
    good = "".join(f"1\t1\t1\t{i}\t{100 + i}\n" for i in range(5))
    (tmp_path / "les.txt").write_text(good + "1\t1\t1\tx\t9\n" + good + "1\t2\n")
    stats = convert_lfm1b(str(tmp_path / "les.txt"), output_dir=str(tmp_path / "out"), name="s",
                          on_bad_lines="skip")
    assert stats["interactions"] == 10 and stats["bad_lines_skipped"] == 2
    assert stats["first_bad_lines"][0] == "les.txt line 6: field 'track_id': 'x' is not an integer"
    assert stats["first_bad_lines"][1].startswith("les.txt line 12:")


def cli(*args, cwd):
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_cli_error_is_one_line_exit_2_and_no_output(tmp_path):
    (tmp_path / "les.txt").write_text("1\t2\t3\t4\t5\n1\t2\t3\tfour\t5\n")
    proc = cli("-m", "recbole_mamba.atomics", "lfm1b", "les.txt", "--output-dir", "out", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "python -m recbole_mamba.atomics: error: les.txt line 2, field 'track_id': 'four' is not an integer"
    ]
    assert not (tmp_path / "out").exists()


def test_bad_option_is_one_line_exit_2_in_process(tmp_path, capsys, monkeypatch):
    from recbole_mamba.atomics import __main__ as atomics_main
    from recbole_mamba.atomics.__main__ import main

    monkeypatch.setattr(atomics_main, "return_large_allocations", lambda: None)  # not in pytest's process

    (tmp_path / "les.txt").write_text("1\t2\t3\t4\t5\n")
    assert main(["lfm1b", str(tmp_path / "les.txt"), "--user-fraction", "2"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "python -m recbole_mamba.atomics: error: --user-fraction must be in (0, 1], got 2.0"
    ]


@pytest.mark.parametrize("source", ["kuairand", "lfm1b"])
def test_both_converters_take_every_shared_option(source):
    """The shared options are one object: each of its fields is a flag of both sub-commands, and
    parses into the keyword the converters take."""
    from dataclasses import fields

    from recbole_mamba.atomics.__main__ import build_parser
    from recbole_mamba.atomics.options import ConvertOptions

    flags = ["--output-dir", "o", "--name", "n", "--max-len", "7", "--min-user-len", "2",
             "--min-item-count", "3", "--users", "4", "--seed", "5", "--drop-consecutive-duplicates",
             "--on-bad-lines", "skip"]
    args = build_parser().parse_args([source, "in.txt", *flags])
    values = ConvertOptions.values_of(args)
    assert set(values) == {f.name for f in fields(ConvertOptions)}
    assert values == dict(output_dir="o", name="n", max_len=7, min_user_len=2, min_item_count=3, users=4,
                          user_fraction=None, seed=5, drop_consecutive_duplicates=True, on_bad_lines="skip")
    assert ConvertOptions(**values).cut() == {k: v for k, v in values.items()
                                              if k not in ("output_dir", "name", "on_bad_lines")}


def test_kuairand_feature_files_become_user_and_item_files(tmp_path):
    rows = [{"user_id": u, "video_id": v, "time_ms": 1000 * (u + v), "is_click": 1} for u in range(3) for v in range(4)]
    write_kuairand(tmp_path / "log.csv", rows)
    (tmp_path / "user_features_27k.csv").write_text(
        "user_id,user_active_degree,follow_user_num\n0,high_active,5\n1,full_active,7\n2,,9\n9,high_active,1\n")
    (tmp_path / "video_features_basic_27k.csv").write_text(
        "video_id,author_id,video_type,video_duration\n" + "".join(f"{v},{10 + v},NORMAL,{1000 * v}\n" for v in range(6)))
    stats = convert_kuairand(str(tmp_path / "log.csv"), output_dir=str(tmp_path / "out"), name="k",
                             user_features=str(tmp_path / "user_features_27k.csv"),
                             item_features=str(tmp_path / "video_features_basic_27k.csv"))
    users = pd.read_csv(os.path.join(stats["folder"], "k.user"), sep="\t", keep_default_na=False)
    assert list(users.columns) == ["user_id:token", "user_active_degree:token", "follow_user_num:float"]
    assert users["user_id:token"].tolist() == [0, 1, 2]  # only users in the interactions
    items = pd.read_csv(os.path.join(stats["folder"], "k.item"), sep="\t")
    assert list(items.columns) == ["item_id:token", "author_id:float", "video_type:token", "video_duration:float"]
    assert items["item_id:token"].tolist() == [0, 1, 2, 3]


def test_converted_dataset_trains_mambarec(tmp_path, cli_main):
    rows = []
    rng = np.random.default_rng(0)
    for user in range(30):
        for step in range(25):
            rows.append({"user_id": user, "video_id": int(rng.integers(0, 40)),
                         "time_ms": 1_649_000_000_000 + 1000 * step, "is_click": 1})
    write_kuairand(tmp_path / "log_random_4_22_to_5_08_pure.csv", rows)
    (tmp_path / "users.csv").write_text("user_id,user_active_degree\n" + "".join(f"{u},high\n" for u in range(30)))
    (tmp_path / "videos.csv").write_text("video_id,video_type,video_duration\n" + "".join(f"{v},AD,{v * 10}\n" for v in range(40)))
    proc = cli("-m", "recbole_mamba.atomics", "kuairand", "log_random_4_22_to_5_08_pure.csv",
               "--max-len", "20", "--user-features", "users.csv", "--item-features", "videos.csv", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "kuairand-20" in proc.stdout and "interactions" in proc.stdout
    for suffix in ("inter", "user", "item", "yaml"):
        assert (tmp_path / "dataset_atomics" / "kuairand-20" / f"kuairand-20.{suffix}").exists()
    data_path = str(tmp_path / "dataset_atomics")
    cut = RecboleMambaConfig("MambaRec", "kuairand-20", config_dict={"data_path": data_path})
    assert cut["MAX_ITEM_LIST_LENGTH"] == 17  # the dataset carries its cut
    assert cut.source_of("MAX_ITEM_LIST_LENGTH") == os.path.join(data_path, "kuairand-20", "kuairand-20.yaml")
    given = RecboleMambaConfig("MambaRec", "kuairand-20", config_dict={"data_path": data_path,
                                                                       "MAX_ITEM_LIST_LENGTH": 10})
    assert given["MAX_ITEM_LIST_LENGTH"] == 10 and given.source_of("MAX_ITEM_LIST_LENGTH") == "given"
    code, out, err = cli_main(tmp_path, "--dataset=kuairand-20", "--epochs=1", "--hidden_size=16",
                              "--MAX_ITEM_LIST_LENGTH=10", "--show_progress=False")
    assert code == 0, err[-2000:]
    assert out.startswith("MambaRec on kuairand-20 — test, full ranking")


def test_synthetic_writes_a_dataset_whose_rule_needs_the_long_context(tmp_path, capsys):
    import json

    from recbole_mamba.atomics.__main__ import main

    assert main(["synthetic", "--users", "50", "--length", "30", "--items", "20", "--lags", "4,16",
                 "--noise", "0.2", "--output-dir", str(tmp_path), "--name", "syn"]) == 0
    folder = tmp_path / "syn"
    lines = (folder / "syn.inter").read_text().splitlines()
    assert lines[0] == "user_id:token\titem_id:token\ttimestamp:float" and len(lines) == 1 + 50 * 30
    stats = json.loads((folder / "stats.json").read_text())
    oracle = stats["oracle_hr@1_by_context"]
    assert oracle["1"] == 0.05 and oracle["1"] < oracle["5"] < oracle["17"]  # longer context: better ceiling
    assert oracle["17"] == pytest.approx(1 - 0.2 + 0.2 / 20)
    assert "oracle HR@1 by context length" in capsys.readouterr().out
    assert main(["synthetic", "--lags", "0", "--output-dir", str(tmp_path)]) == 2
    assert "lags must be positive integers" in capsys.readouterr().err


@pytest.mark.parametrize("every", [0.0, 3600.0])  # a progress line for every block, or none before the end
def test_last_progress_line_is_the_true_count(tmp_path, capsys, monkeypatch, every):
    from recbole_mamba.atomics import convert

    monkeypatch.setattr(convert._Progress.__init__, "__defaults__", (every,))
    write_kuairand(tmp_path / "a.csv", [{"user_id": u % 7, "video_id": u, "time_ms": u, "is_click": 1}
                                        for u in range(500)])
    write_kuairand(tmp_path / "b.csv", [{"user_id": u % 5, "video_id": u, "time_ms": 10_000 + u, "is_click": u % 2}
                                        for u in range(300)])
    stats = convert_kuairand([str(tmp_path / "a.csv"), str(tmp_path / "b.csv")], output_dir=str(tmp_path / "out"))
    lines = capsys.readouterr().err.strip().splitlines()
    assert stats["rows_read"] == 800
    assert re.fullmatch(r"all inputs: 800 rows read \([\d,]+ rows/s\)", lines[-1])
    assert (len(lines) > 1) == (every == 0.0)
