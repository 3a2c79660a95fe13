"""Serving: a checkpoint alone -> recommendations; live sessions equal the batch model; bad input
is one clear error."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from recbole_mamba.quick_start import run
from recbole_mamba.serve import ServeError, load
from recbole_mamba.trainer import CheckpointError
from tests.conftest import TINY_CONFIG

WINDOW = 8
MODELS = {  # id -> (model, overrides): one per way a session steps
    "MambaRec": ("MambaRec", {}),
    "MambaRec-2-layers": ("MambaRec", {"n_layers": 2}),
    "MambaRec-delay-line": ("MambaRec", {"d_conv": 12}),  # a convolution longer than the window
    "MambaRec-ffn-positions": ("MambaRec", {"block_type": "mamba_ffn", "n_layers": 2, "use_position_embedding": True}),
    "RecMamba": ("RecMamba", {}),
    "MoEMaTrRec": ("MoEMaTrRec", {}),
    "MoEMaTrRec-sequence-gate": ("MoEMaTrRec", {"gate_type": "sequence"}),
    "GRU4Rec": ("GRU4Rec", {"embedding_size": 16}),
    "SASRec": ("SASRec", {}),
    "MambaRec-popularity-SSM": ("MambaRec", {"loss_type": "SSM", "train_negatives": 16,
                                             "train_negatives_distribution": "popularity"}),
}


@pytest.fixture(scope="module")
def checkpoints(tiny_data_path, tmp_path_factory):
    import os

    cwd = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("serve"))
    try:  # a folder per run: RecBole names a checkpoint by model and second, and two runs can share both
        return {key: run(model, "ml-tiny", config_dict={
            **TINY_CONFIG, "data_path": tiny_data_path, "MAX_ITEM_LIST_LENGTH": WINDOW, "state": "WARNING",
            "n_layers": 1, "checkpoint_dir": os.path.join("saved", key), **overrides})["checkpoint"]
            for key, (model, overrides) in MODELS.items()}
    finally:
        os.chdir(cwd)


@pytest.mark.parametrize("key", MODELS)
def test_sessions_equal_the_batch_model_before_and_after_the_window(key, checkpoints):
    rec = load(checkpoints[key])
    g = torch.Generator().manual_seed(0)
    history = torch.randint(1, len(rec.item_tokens), (3 * WINDOW + 1,), generator=g).tolist()
    session = rec.session()
    for n, item in enumerate(history, 1):
        session.observe_id(item)
        if n in (1, 5, WINDOW, WINDOW + 1, 2 * WINDOW + 3, 3 * WINDOW + 1):
            expected = rec.scores([history[:n]])[0]
            got = session.scores()
            real = torch.isfinite(expected)
            assert torch.equal(real, torch.isfinite(got))
            error = ((got[real] - expected[real]).abs().max() / expected[real].abs().max()).item()
            assert error <= 1e-5, f"{key} after {n} events: relative error {error:.1e}"
    # the context rule: recurrent models without positions read the whole history
    whole = key in ("MambaRec", "MambaRec-2-layers", "MambaRec-delay-line", "GRU4Rec", "MambaRec-popularity-SSM")
    assert (rec.context_limit is None) == whole and session.recurrent == (key != "SASRec")
    if not whole:  # a window: the batch model on the last WINDOW events only
        torch.testing.assert_close(rec.scores([history])[0], rec.scores([history[-WINDOW:]])[0])


@pytest.mark.parametrize("key", ["MambaRec", "MoEMaTrRec", "SASRec"])
def test_session_bytes_round_trip(key, checkpoints):
    rec = load(checkpoints[key])
    session = rec.session(["1", "2", "3"])
    again = rec.session_from_bytes(session.to_bytes())
    for token in ("4", 5, "6"):
        session.observe(token)
        again.observe(token)
    assert session.topk(5) == again.topk(5)
    assert session.topk(3, exclude=[session.topk(1)[0][0]])[0] == session.topk(2)[1]


@pytest.mark.parametrize("key,kernel", [("MambaRec", True), ("MambaRec-2-layers", True),
                                        ("MambaRec-delay-line", True),
                                        ("MambaRec-ffn-positions", False)])
def test_mambarec_steps_in_one_kernel_call_where_it_can(key, kernel, checkpoints):
    from recbole_mamba.serve.session import _MambaRecKernelStep, _MambaRecStep

    rec = load(checkpoints[key])
    session = rec.session()
    assert isinstance(session._stepper, _MambaRecKernelStep) == kernel
    if kernel:  # the same states, stepped by PyTorch ops, give the same output
        by_torch = _MambaRecStep(rec)
        state_c, state_t = session._stepper.initial(), by_torch.initial()
        for position, item in enumerate([3, 1, 4, 1, 5, 9, 2, 6]):
            session._stepper.step(state_c, item, position)
            by_torch.step(state_t, item, position)
            torch.testing.assert_close(state_c["out"], state_t["out"], rtol=1e-5, atol=1e-5)
        for name in state_t:
            torch.testing.assert_close(state_c[name], state_t[name], rtol=1e-5, atol=1e-5)


def test_a_session_with_tampered_state_is_refused(checkpoints):
    import io

    rec = load(checkpoints["MambaRec"])
    saved = torch.load(io.BytesIO(rec.session(["1", "2"]).to_bytes()), weights_only=True)
    saved["state"]["ssm0"] = saved["state"]["ssm0"][:, :3]  # the kernel would write past its end
    buffer = io.BytesIO()
    torch.save(saved, buffer)
    with pytest.raises(ServeError, match="saved session state 'ssm0' is not a torch.float32 tensor of shape"):
        rec.session_from_bytes(buffer.getvalue())


def test_mamba_session_state_does_not_grow(checkpoints):
    rec = load(checkpoints["MambaRec"])
    session = rec.session(["1"])
    size = len(session.to_bytes())
    for _ in range(50):
        session.observe("2")
    assert len(session.to_bytes()) == size and session.window == []


def test_recommend_and_recommend_users(checkpoints, tiny_data_path):
    rec = load(checkpoints["MambaRec"])
    top = rec.recommend(["1", 2, "3"], k=5)
    assert len(top) == 5 and all(isinstance(t, str) and isinstance(s, float) for t, s in top)
    assert [s for _, s in top] == sorted((s for _, s in top), reverse=True)
    unseen = rec.recommend([top[0][0]], k=3, exclude_seen=True)
    assert top[0][0] not in [t for t, _ in unseen]
    frame = pd.read_csv(Path(tiny_data_path) / "ml-tiny" / "ml-tiny.inter", sep="\t", dtype=str)
    frame = frame[frame["user_id:token"] == "7"].sort_values("timestamp:float", key=lambda c: c.astype(float),
                                                              kind="stable")
    assert rec.recommend_users(["7"], k=4) == {"7": rec.recommend(frame["item_id:token"].tolist(), k=4)}
    with pytest.raises(ServeError, match="unknown user 'nobody'"):
        rec.recommend_users(["nobody"])


@pytest.mark.parametrize("history, message", [
    (["1", "no-such-item"], "unknown item 'no-such-item'"),
    (["1", 2.5], r"item tokens are strings or ints, got 2.5 \(float\)"),
    ([None], r"item tokens are strings or ints, got None"),
    ([], "empty history"),
])
def test_bad_histories_are_one_clear_error(history, message, checkpoints):
    with pytest.raises(ServeError, match=message):
        load(checkpoints["MambaRec"]).recommend(history)


def test_unknown_items_can_be_skipped_with_a_warning(checkpoints):
    rec = load(checkpoints["MambaRec"])
    with pytest.warns(UserWarning, match="1 unknown item"):
        assert rec.recommend(["1", "no-such-item"], unknown="skip") == rec.recommend(["1"])


def test_bad_checkpoints_are_one_clear_error(checkpoints, tmp_path):
    path = Path(checkpoints["MambaRec"])
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load(truncated)
    with pytest.raises(CheckpointError, match="a checkpoint of MambaRec, not of RecMamba"):
        load(path, model="RecMamba")
    state = torch.load(path, weights_only=True)
    tampered = tmp_path / "tampered.pth"
    torch.save({**state, "model": "RecMamba"}, tampered)  # another class's weights
    with pytest.raises(CheckpointError, match="its weights do not fit a RecMamba"):
        load(tampered)
    pickled = tmp_path / "pickled.pth"
    torch.save({**state, "extra": object()}, pickled)
    with pytest.raises(CheckpointError, match="refusing to load"):
        load(pickled)


def test_a_checkpoint_from_any_backend_loads_on_cpu(checkpoints, tmp_path):
    state = torch.load(checkpoints["RecMamba"], weights_only=True)
    parameters = json.loads(state["parameters_json"])
    moved = tmp_path / "from-gpu.pth"
    torch.save({**state, "parameters_json": json.dumps({**parameters, "mamba_backend": "cuda"})}, moved)
    assert load(moved).recommend(["1"]) == load(checkpoints["RecMamba"]).recommend(["1"])


def test_session_bytes_of_another_model_or_garbage_are_refused(checkpoints):
    data = load(checkpoints["SASRec"]).session(["1"]).to_bytes()
    rec = load(checkpoints["MambaRec"])
    with pytest.raises(ServeError, match="a session of SASRec, not of MambaRec"):
        rec.session_from_bytes(data)
    with pytest.raises(ServeError, match="not a saved session"):
        rec.session_from_bytes(data[:100])


def test_recommend_command_writes_every_user(checkpoints, tmp_path):
    script = Path(__file__).resolve().parents[2] / "run_recbole_mamba.py"
    users = tmp_path / "users.txt"
    users.write_text("3\n1\n")
    proc = subprocess.run([sys.executable, str(script), "--recommend", f"--checkpoint={checkpoints['GRU4Rec']}",
                           f"--users={users}", "--k=4", f"--out={tmp_path / 'recs.csv'}"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = list(csv.reader(open(tmp_path / "recs.csv")))
    assert rows[0] == ["user_id", "rank", "item_id", "score"] and len(rows) == 1 + 2 * 4
    rec = load(checkpoints["GRU4Rec"])
    expected = rec.recommend_users(["1"], k=4)["1"]
    assert [(r[2], int(r[1])) for r in rows[1:5]] == [(item, rank) for rank, (item, _) in enumerate(expected, 1)]
    all_users = rec.write_recommendations(tmp_path / "all.csv", k=2, progress=False)
    assert all_users == 60 and len(list(csv.reader(open(tmp_path / "all.csv")))) == 1 + 60 * 2
