#!/usr/bin/env python3
"""Measured vs modelled time per kernel, for calibrating the H100 model (issue 19, item 4).

Usage: python3 tools/profile_compare.py MEASURED.json MODELLED.json > OUT.json

MEASURED is `samrt profile --json` on a GPU (time_source "cuda_events"), MODELLED the same
command on vgpu (time_source "model") for the same model, image size and batch. Rows are
joined by (kernel entry point, graph op); a kernel only one side has gets null on the other.
The output is one JSON object (bench/results style): per kernel the launches, both times,
measured / modelled, and the model's bound; then the same for the totals.
"""
import datetime
import json
import sys


def rows(p):
    return {(k["name"], k["op"]): k for k in p["kernels"]}


def ratio(a, b):
    return None if a is None or b in (None, 0) else a / b


def main(measured_path, modelled_path):
    measured, modelled = (json.load(open(p)) for p in (measured_path, modelled_path))
    for p, want, path in ((measured, "cuda_events", measured_path),
                          (modelled, "model", modelled_path)):
        if p.get("time_source") != want:
            sys.exit(f"{path}: time_source is {p.get('time_source')!r}, expected {want!r}")
    m, d = rows(measured), rows(modelled)
    keys = list(m) + [k for k in d if k not in m]
    kernels = []
    for k in keys:
        a, b = m.get(k), d.get(k)
        t_meas = a["time_us"] if a else None
        t_mod = b["time_us"] if b else None
        kernels.append({
            "name": k[0], "op": k[1],
            "launches": (a or b)["launches"],
            "measured_us": t_meas, "modelled_us": t_mod,
            "measured_over_modelled": ratio(t_meas, t_mod),
            "modelled_bound": b["bound"] if b else None,
            "floor_us": (b or a)["floor_us"],
        })
    out = {
        "date": datetime.date.today().isoformat(),
        "device": measured["device"],
        "modelled_on": modelled["device"],
        "inputs": [measured_path, modelled_path],
        "total": {
            "measured_us": measured["total_us"], "modelled_us": modelled["total_us"],
            "measured_over_modelled": ratio(measured["total_us"], modelled["total_us"]),
            "floor_us": modelled["floor_us"],
        },
        "kernels": kernels,
    }
    json.dump(out, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(*sys.argv[1:])
