"""Live sessions against re-encoding: per-event latency of ``observe`` + ``topk(10)`` for MambaRec
(whole-history context, O(1) per event; shipped, and with ``d_conv`` 64) and, for contrast, SASRec
(a window, re-encoded per event), against scoring the history again with the batch model, at
histories of 200, 2,000 and 5,000 items (batch 1, CPU; median time per event), and the session's
size in bytes. First, one mixer step at convolution widths 4 (shipped) and 64 (a delay line:
``d_conv``), the cpu kernel against PyTorch ops.

The models are trained for one epoch on ml-100k (all positions, MAX_ITEM_LIST_LENGTH 200) in a
temporary folder: latency does not depend on how well they rank. Target: MambaRec's session
>= 100x faster than re-encoding at 2,000 events. ``python benchmarks/bench_streaming.py``
"""

import argparse
import os
import platform
import statistics
import tempfile
import time
import warnings

import torch


def per_event_seconds(fn, events):
    """The median time of ``fn(item)`` over the events (a shared VM's hiccups move the mean)."""
    times = []
    for item in events:
        start = time.perf_counter()
        fn(item)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def mixer_step_line(d_conv):
    """One Mamba mixer step (d_model 64, d_state 32, batch 1, convolution width ``d_conv``): the
    cpu backend's one-call kernel against the same step in PyTorch ops."""
    from recbole_mamba.layers import Mamba

    timings = {}
    x = torch.randn(1, 1, 64)
    with torch.inference_mode():
        for backend in ("cpu", "torch"):
            mixer = Mamba(64, d_state=32, d_conv=d_conv, backend=backend).eval()
            states = mixer.allocate_inference_cache(1, 1)
            timings[backend] = per_event_seconds(lambda _: mixer.step(x, *states), range(2000))
    print(f"mixer step (d_model 64, d_state 32, d_conv {d_conv}, batch 1): cpu kernel {timings['cpu'] * 1e6:.0f} us, "
          f"PyTorch ops {timings['torch'] * 1e6:.0f} us, ratio {timings['torch'] / timings['cpu']:.1f}x")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="200,2000,5000")
    parser.add_argument("--events", type=int, default=200, help="events timed per history")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    from recbole_mamba import load, run

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU: {platform.machine()}")
    for d_conv in (4, 64):  # the shipped width, and a delay line that reads 63 items back exactly
        mixer_step_line(d_conv)
    folder = tempfile.mkdtemp()
    os.chdir(folder)
    config = {"epochs": 1, "train_mode": "all_positions", "MAX_ITEM_LIST_LENGTH": 200, "state": "WARNING",
              "show_progress": False}
    # the shipped MambaRec, MambaRec with a delay line (d_conv 64), SASRec
    for label, model, settings in (("MambaRec", "MambaRec", {}), ("MambaRec d_conv 64", "MambaRec", {"d_conv": 64}),
                                   ("SASRec", "SASRec", {})):
        rec = load(run(model, "ml-100k", config_dict={**config, **settings})["checkpoint"])
        g = torch.Generator().manual_seed(0)
        for length in (int(v) for v in args.lengths.split(",")):
            items = torch.randint(1, len(rec.item_tokens), (length + 2 * args.events,), generator=g).tolist()
            history, warmup, events = items[:length], items[length:length + args.events], items[length + args.events:]
            session = rec.session()
            for item in history:
                session.observe_id(item)

            def live(item):
                session.observe_id(item)
                rec.top(session.scores(), 10)

            seen = list(history)

            def again(item):
                seen.append(item)
                rec.top(rec.scores([seen])[0], 10)

            per_event_seconds(live, warmup)  # steady state: caches, allocator, thread pool
            streaming = per_event_seconds(live, events)
            reencoding = per_event_seconds(again, events[: max(5, args.events // 10)])
            print(f"{label} history {length:,}: observe+topk {streaming * 1e3:.2f} ms, re-encode+topk "
                  f"{reencoding * 1e3:.2f} ms, ratio {reencoding / streaming:.1f}x"
                  f"{' (target >= 100x at 2,000)' if model == 'MambaRec' and length == 2000 else ''}, "
                  f"session {len(session.to_bytes()):,} bytes ({rec.context_limit or 'whole'} context)")


if __name__ == "__main__":
    main()
