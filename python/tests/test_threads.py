"""One model shared by 8 Python threads predicting at once gives the serial results, and
every computation releases the GIL."""

import threading
import time

import numpy as np
from conftest import embedded, prompt_kwargs

import samrt

THREADS = 8


def test_eight_threads_share_one_model(sam, manifest):
    names = ["coffee", "chelsea"]
    sources = {n: embedded(sam, manifest, n) for n in names}
    work = [(n, prompt_kwargs(p)) for p in manifest["prompts"] for n in names if p["image"] == n]
    serial = [sources[n].predict(**kw) for n, kw in work]
    results = [None] * THREADS
    errors = []
    start = threading.Barrier(THREADS)

    def run(t):
        try:
            # Each thread its own predictor on the shared model; half of them also share
            # one predictor, which is safe as well.
            own = {}
            for n in names:
                src = sources[n]
                p = samrt.SamPredictor(sam)
                p.set_embedding(src.get_image_embedding(), src.original_size, src.input_size)
                own[n] = p if t % 2 else src
            start.wait()
            order = list(range(len(work)))[t % len(work) :] + list(range(t % len(work)))
            out = {}
            for i in order:
                n, kw = work[i]
                out[i] = own[n].predict(**kw)
            results[t] = [out[i] for i in range(len(work))]
        except Exception as e:  # reported below with the thread number
            errors.append((t, e))

    threads = [threading.Thread(target=run, args=(t,)) for t in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    for t in range(THREADS):
        for got, want in zip(results[t], serial):
            for g, w in zip(got, want):
                np.testing.assert_array_equal(g, w)


def test_set_image_releases_the_gil(sam, manifest):
    """A pure-Python thread keeps running while another thread encodes an image: with the
    GIL held for the ~1 s encode it could not advance at all."""
    from conftest import image

    img = image("astronaut.png")
    p = samrt.SamPredictor(sam)
    ticks = []
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.001)

    # Switch threads often, so a held GIL would show as a gap of the whole encode.
    th = threading.Thread(target=spin)
    th.start()
    try:
        time.sleep(0.05)
        t0 = time.perf_counter()
        p.set_image(img)
        t1 = time.perf_counter()
    finally:
        stop.set()
        th.join()
    during = [t for t in ticks if t0 <= t <= t1]
    gaps = np.diff([t0] + during + [t1])
    assert t1 - t0 > 0.05
    # The spinner ran throughout: no pause longer than half the encode.
    assert gaps.max() < 0.5 * (t1 - t0), (gaps.max(), t1 - t0)
