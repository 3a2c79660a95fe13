"""A user's own atomic files, checked as a run loads them and by ``python -m recbole_mamba.atomics
check``: one line naming file, line, field and value, exit 2, no traceback; a valid dataset trains
as before."""

import numpy as np
import pytest

from recbole_mamba.atomics.__main__ import main as atomics_main

HEADER = "user_id:token\titem_id:token\ttimestamp:float"
RUN = ("--epochs=1", "--hidden_size=8", "--MAX_ITEM_LIST_LENGTH=10", "--show_progress=False")


def write(tmp_path, name, rows, header=HEADER, users=12, per_user=8):
    """``name.inter`` in ``tmp_path/data``: ``users`` valid users, then ``rows`` (lines as written)."""
    folder = tmp_path / "data" / name
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    valid = [f"{u}\t{rng.integers(1, 40)}\t{t}" for u in range(users) for t in range(per_user)]
    (folder / f"{name}.inter").write_text("\n".join([header, *valid, *rows]) + "\n")
    return str(tmp_path / "data")


def first_bad_line(users=12, per_user=8):
    return 2 + users * per_user


def run_cli(cli_main, tmp_path, data_path, name, *extra):
    code, out, err = cli_main(tmp_path, f"--dataset={name}", f"--data_path={data_path}", *RUN, *extra)
    assert "Traceback" not in err
    return code, out, err


def error_line(err):
    lines = [line for line in err.splitlines() if line.startswith("run_recbole_mamba.py: error:")]
    assert len(lines) == 1, err[-2000:]
    return lines[0]


@pytest.mark.parametrize("rows, message", [
    (["100\t5\tabc"], "line {n}, field 'timestamp': 'abc' is not a float"),
    (["100\t5"], "line {n}: 2 fields, the header has 3: '100\\t5'"),
    (["100\t5\t6\t7"], "line {n}: 4 fields, the header has 3: '100\\t5\\t6\\t7'"),
    (["\t5\t6"], "line {n}, field 'user_id': empty (the user, item and time fields need a value)"),
])
def test_a_bad_row_is_one_line_naming_file_line_field_and_value(rows, message, tmp_path, cli_main):
    data_path = write(tmp_path, "mine", rows)
    code, out, err = run_cli(cli_main, tmp_path, data_path, "mine")
    assert code == 2 and out == ""
    assert error_line(err) == (f"run_recbole_mamba.py: error: {data_path}/mine/mine.inter: "
                               + message.format(n=first_bad_line()))


def test_a_missing_timestamp_in_a_dataset_of_one_user(tmp_path, cli_main):
    data_path = write(tmp_path, "one", ["0\t3\t1", "0\t4"], users=0)
    code, _, err = run_cli(cli_main, tmp_path, data_path, "one")
    assert code == 2 and error_line(err).endswith("one.inter: line 3: 2 fields, the header has 3: '0\\t4'")


def test_the_first_ten_problems_and_the_count(tmp_path, cli_main):
    data_path = write(tmp_path, "many", [f"100\t{i}\tx{i}" for i in range(15)])
    code, _, err = run_cli(cli_main, tmp_path, data_path, "many")
    line = error_line(err)
    assert code == 2 and line.count("is not a float") == 10 and line.endswith("'x9' is not a float (15 in all)")


@pytest.mark.parametrize("separator, name", [(",", "comma"), (";", "semicolon")])
def test_a_file_with_another_separator_says_so(separator, name, tmp_path, cli_main):
    data_path = write(tmp_path, "sep", [], header=HEADER.replace("\t", separator), users=0)
    code, _, err = run_cli(cli_main, tmp_path, data_path, "sep")
    line = error_line(err)
    assert code == 2 and f"the header looks {name}-separated" in line
    assert f"set field_separator: '{separator}'" in line


def test_a_dataset_too_small_for_leave_one_out_is_refused_before_training(tmp_path, cli_main):
    data_path = write(tmp_path, "tiny", [], users=6, per_user=2)
    code, _, err = run_cli(cli_main, tmp_path, data_path, "tiny")
    assert code == 2
    assert error_line(err).startswith("run_recbole_mamba.py: error: tiny is too small for its protocol: ")
    assert "0 valid, 0 test rows from 6 users of at most 2 interactions" in err
    assert "epoch 0 training" not in err


def test_a_sampled_protocol_larger_than_the_catalogue_is_refused(tmp_path, cli_main):
    data_path = write(tmp_path, "few", [])
    code, _, err = run_cli(cli_main, tmp_path, data_path, "few", "--eval_args={'mode': 'uni100'}")
    assert code == 2 and "eval_args mode uni100 samples 100 negatives" in error_line(err)


def test_empty_values_in_other_columns_and_quoted_separators_load(tmp_path, cli_main):
    header = HEADER + "\tnote:token\trating:float"
    folder = tmp_path / "data" / "fine"
    folder.mkdir(parents=True)
    rows = [f"{u}\t{(u * 7 + t) % 30 + 1}\t{t}\t{'' if t % 2 else 'a b'}\t{'' if t % 3 else 2.5}"
            for u in range(10) for t in range(8)]
    rows[3] = rows[3].replace("\ta b\t", '\t"x\ty"\t')
    (folder / "fine.inter").write_text("\n".join([header, *rows]) + "\n")
    code, out, err = run_cli(cli_main, tmp_path, str(tmp_path / "data"), "fine")
    assert code == 0, err[-2000:]
    assert out.startswith("MambaRec on fine — test")


def test_the_check_command(tmp_path, capsys):
    data_path = write(tmp_path, "good", [])
    assert atomics_main(["check", f"{data_path}/good"]) == 0
    out = capsys.readouterr().out
    assert "good" in out.splitlines()[1] and "96" in out.splitlines()[1]  # the Table-1 row: 96 interactions
    assert "leave-one-out by time: 60 training, 12 valid and 12 test rows; 12 of 12 users" in out
    assert "uni100 / pop100 do not fit" in out and out.rstrip().endswith("it trains")

    bad = write(tmp_path / "b", "bad", ["1\t2\tnope"])
    assert atomics_main(["check", f"{bad}/bad"]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip() == (f"python -m recbole_mamba.atomics: error: {bad}/bad/bad.inter: "
                                    f"line {first_bad_line()}, field 'timestamp': 'nope' is not a float")

    small = write(tmp_path / "s", "small", [], users=5, per_user=2)
    assert atomics_main(["check", f"{small}/small"]) == 2
    assert "it would not train" in capsys.readouterr().out
