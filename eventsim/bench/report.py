"""The ratios between records of one run, and the table ``eventsim bench`` prints.

Ratios are taken only between records of the same run (same machine, same
moment), matched on workload, T and threads:

- ``speedup_over_<peer>`` (eventsim's records of a workload a peer also
  runs, one per peer measured, :data:`~eventsim.bench.peers.PEERS`): the
  peer's seconds per sample over eventsim's; 20 means eventsim processes a
  sample 20 times faster;
- ``rss_over_<peer>``: eventsim's peak resident set over the peer's;
  ``rise_over_<peer>``: the same for the rise of the resident set during
  the measured repetition (the part's own memory, without what each
  process held before it: interpreter, libraries, input);
- ``best_peer``: the peer with the shortest time per sample in the same
  row (workload, T, threads), and ``speedup_over_best_peer``,
  ``rss_over_best_peer``, ``rise_over_best_peer``: the ratios against it;
- ``fraction_of_add_peak`` (conv-scatter): its SynOps/s over the core's float32
  adds/s measured by add-peak, both on one core; (eventsim's LeNet training
  and inference) its SynOps/s over the add peak of its thread count's cores
  (add-peak's one-core rate times the threads);
- ``previous_T``, ``time_exponent`` and ``rss_over_previous_T`` (every
  record with a smaller T of the same workload, system and threads in the
  run): how time and peak memory grow with T, ``time_exponent = log(t2 /
  t1) / log(T2 / T1)`` against the next smaller T (0.4 means time grows as
  T^0.4);
- ``speedup_over_1_thread`` (records with more threads): the one-thread
  record's seconds per sample over this one's;
- ``efficiency_vs_process`` (cluster-train on a cluster): the ``process``
  record's seconds per sample over this one's, on the same cores.
"""

from __future__ import annotations

import math

from eventsim.bench.peers import PEERS

COLUMNS = ("workload", "system", "T", "threads", "ms/sample", "peak MB", "rise MB", "GSynOps/s", "speed-up", "note")


def _key(record: dict, **changes: object) -> tuple:
    r = {**record, **changes}
    return r["workload"], r["system"], r["T"], r["threads"]


def _ratio(num: float | None, den: float | None) -> float | None:
    return None if num is None or den is None or den <= 0 else num / den


def _peer_ratios(mine: dict, peer: dict) -> dict[str, float]:
    """eventsim's record ``mine`` against a peer's: speed-up, peak memory and memory rise, where both are known."""
    out = {"speedup": _ratio(peer.get("seconds_per_sample"), mine.get("seconds_per_sample")),
           "rss": _ratio(mine.get("peak_rss_mb"), peer.get("peak_rss_mb")),
           "rise": _ratio(mine.get("rss_rise_mb"), peer.get("rss_rise_mb"))}
    return {name: value for name, value in out.items() if value is not None}


def with_ratios(records: list[dict]) -> list[dict]:
    """Copies of ``records`` with the ratios of the module docstring added where both sides were measured."""
    seconds = {_key(r): r.get("seconds_per_sample") for r in records}
    adds = next((r.get("adds_per_s") for r in records if r["workload"] == "add-peak"), None)
    out = []
    for r in records:
        r = dict(r)
        mine = r.get("seconds_per_sample")
        if r["system"].startswith("eventsim"):
            peers = [p for p in records if p["system"] in PEERS and _key(p, system=r["system"]) == _key(r)
                     and _ratio(p.get("seconds_per_sample"), mine) is not None]
            for p in peers:
                r.update({f"{name}_over_{p['system']}": value for name, value in _peer_ratios(r, p).items()})
            if peers:
                best = min(peers, key=lambda p: p["seconds_per_sample"])
                r["best_peer"] = best["system"]
                r.update({f"{name}_over_best_peer": value for name, value in _peer_ratios(r, best).items()})
        if r["workload"] == "conv-scatter" and _ratio(r.get("synops_per_s"), adds) is not None:
            r["fraction_of_add_peak"] = r["synops_per_s"] / adds
        if (r["workload"] in ("lenet-nmnist-train", "lenet-nmnist-infer") and r["system"].startswith("eventsim")
                and _ratio(r.get("synops_per_s"), adds) is not None):
            r["fraction_of_add_peak"] = r["synops_per_s"] / (adds * r["threads"])
        smaller = [q for q in records if q.get("T") is not None and r.get("T") is not None and q["T"] < r["T"]
                   and _key(q, T=r["T"]) == _key(r) and _ratio(q.get("seconds_per_sample"), mine) is not None]
        if smaller:
            q = max(smaller, key=lambda q: q["T"])
            r["previous_T"] = q["T"]
            r["time_exponent"] = math.log(mine / q["seconds_per_sample"]) / math.log(r["T"] / q["T"])
            value = _ratio(r.get("peak_rss_mb"), q.get("peak_rss_mb"))
            if value is not None:
                r["rss_over_previous_T"] = value
        if r["workload"] == "cluster-train" and r["system"] != "process":
            value = _ratio(seconds.get(_key(r, system="process")), mine)
            if value is not None:
                r["efficiency_vs_process"] = value
        if r["threads"] > 1 and _ratio(seconds.get(_key(r, threads=1)), mine) is not None:
            r["speedup_over_1_thread"] = seconds[_key(r, threads=1)] / mine
        out.append(r)
    return out


def _number(value: float | None, scale: float = 1.0, form: str = ".4g") -> str:
    return "-" if value is None else format(value * scale, form)


def _agreement(r: dict) -> str:
    """A peer's distance to eventsim (:func:`eventsim.bench.recurrent.agreement`): the fraction of equal
    spike counts, the largest readout difference and the largest relative gradient difference, per dtype."""
    def said(suffix: str) -> str:
        parts = [f"{100 * r['spike_counts_equal' + suffix]:.4g} %", f"{r['readout_max_difference' + suffix]:.2g}"]
        if "gradient_max_relative_difference" + suffix in r:
            parts.append(f"{r['gradient_max_relative_difference' + suffix]:.2g}")
        return ", ".join(parts)

    what = "counts equal, readout, grads" if "gradient_max_relative_difference" in r else "counts equal, readout"
    return f"vs eventsim ({what}): {said('')} (float32); {said('_float64')} (float64)"


def _note(r: dict) -> str:
    if "skipped" in r:
        return f"skipped: {r['skipped']}"
    if "failed" in r:
        return f"failed: {r['failed']}"
    if r["workload"] == "add-peak":
        return f"{r['adds_per_s'] / 1e9:.3g} G float32 adds/s per core"
    if r["workload"] == "conv-scatter" and "fraction_of_add_peak" in r:
        return f"{100 * r['fraction_of_add_peak']:.3g} % of add-peak, one core"
    if r["workload"] == "mnist-epoch-data":
        return f"coding {100 * r['data_share']:.3g} % of the epoch's batches (coding and train steps)"
    if r["workload"] == "nmnist-epoch-data":
        return (f"data {100 * r['data_share']:.3g} % of a cached epoch, "
                f"{100 * r['data_share_first_epoch']:.3g} % of the first (encoding)")
    parts = []
    if r["workload"] == "cluster-train" and "epoch_seconds" in r:
        parts.append(f"epoch {r['epoch_seconds']:.3g} s, step {1e3 * r['step_seconds']:.3g} ms "
                     f"(chunks {1e3 * r['chunk_seconds_per_sample']:.3g} ms/sample, update "
                     f"{1e3 * r['apply_seconds']:.3g} ms, communication {1e3 * r['overhead_seconds']:.3g} ms, "
                     f"{r['bytes_per_step'] / 1e6:.3g} MB)")
        if "efficiency_vs_process" in r:
            parts.append(f"{100 * r['efficiency_vs_process']:.3g} % of the process's speed")
    if "best_peer" in r:
        title = PEERS[r["best_peer"]].title
        memory = f", peak memory {r['rss_over_best_peer']:.3g}x {title}'s" if "rss_over_best_peer" in r else ""
        parts.append(f"best peer {title}{memory}")
    if r["workload"] != "conv-scatter" and "fraction_of_add_peak" in r:
        parts.append(f"{100 * r['fraction_of_add_peak']:.3g} % of add-peak on {r['threads']} cores")
    if "time_exponent" in r:
        memory = f", memory {r['rss_over_previous_T']:.3g}x" if "rss_over_previous_T" in r else ""
        parts.append(f"time ~T^{r['time_exponent']:.2f} from T = {r['previous_T']}{memory}")
    if "hidden_rate" in r:
        parts.append(f"hidden {100 * r['hidden_rate']:.3g} % per step")
    if "spike_counts_equal" in r:
        parts.append(_agreement(r))
    if "predictions_equal" in r:
        parts.append(f"vs eventsim: readout {r['readout_max_difference']:.2g}, "
                     f"predictions {100 * r['predictions_equal']:.4g} % equal")
    if "backward_note" in r:
        parts.append(r["backward_note"])
    if "speedup_over_1_thread" in r:
        parts.append(f"{r['speedup_over_1_thread']:.3g}x over 1 thread")
    return "; ".join(parts)


def row(r: dict) -> tuple[str, ...]:
    """One table row: the cells of :data:`COLUMNS` for record ``r``."""
    speedup = r.get("speedup_over_best_peer")
    return (
        r["workload"], r["system"], "-" if r["T"] is None else str(r["T"]), str(r["threads"]),
        _number(r.get("seconds_per_sample"), 1e3), _number(r.get("peak_rss_mb"), form=".1f"),
        _number(r.get("rss_rise_mb"), form=".1f"),
        _number(r.get("synops_per_s"), 1e-9), "" if speedup is None else f"{speedup:.4g}x", _note(r),
    )


def table(records: list[dict]) -> str:
    """The records as one aligned text table, per T and thread setting as measured.

    ``speed-up`` is the best peer's time per sample over eventsim's (same
    workload, T and threads; the note names that peer); ``rise MB`` is how far the peak resident set
    rose above what was resident before the measured repetition.
    """
    rows = [COLUMNS] + [row(r) for r in records]
    widths = [max(len(cells[i]) for cells in rows) for i in range(len(COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(w) if i in (0, 1, len(COLUMNS) - 1) else cell.rjust(w)
                  for i, (cell, w) in enumerate(zip(cells, widths))).rstrip()
        for cells in rows
    )
