"""What a federation cost and scored, per round and in total: ``cost.json`` and ``results.json``.

``cost.json`` follows `dgsamp.cost.report`'s schema (``dgsamp.cost/1``) where tools/compare.py
reads it (``totals.flops.train``, ``totals.time_s.train``, ``totals.energy_train_j.total``,
``totals.epochs.skipped``, ``metrics.val``), with one row per *round* in ``epochs`` and a
``federated`` section (settings, bytes and messages in total). Client FLOPs, time and energy are
the clients' own CostHook reports, summed; a client whose meter was unavailable makes the sum
unavailable (never a partial sum). Energy sums machine-wide meters per client: when clients run
concurrently on one machine (the simulation) a RAPL reading counts the overlap more than once,
so its source says so.
"""

from __future__ import annotations

import math

from ..cost.report import SCHEMA, config_summary, machine_info, measure, sum_measure, write_json
from ..evaluation.report import write_results


def client_cost_summary(cost: dict) -> dict:
    """The numbers of one client's CostHook report that a round row needs (with sources)."""
    totals = cost.get("totals", {})
    return dict(flops=totals.get("flops", {}).get("train"),
                time_s=totals.get("time_s", {}).get("train"),
                energy_j=totals.get("energy_train_j", {}).get("total"),
                epochs=totals.get("epochs"), samples=totals.get("samples"))


def _sum_of(clients: list[dict], key: str, what: str) -> dict:
    values = [c[key].get("value") if c.get(key) else None for c in clients]
    sources = sorted({c[key].get("source") for c in clients if c.get(key) and c[key].get("source")})
    return sum_measure(values, f"sum over the round's clients of: {'; '.join(sources)}",
                       f"{what} unavailable on some client")


def round_row(server_round: int, kind: str, clients: list[dict], failures: list[dict],
              traffic: dict, wall_s: float, metrics: dict, sampling: dict | None = None) -> dict:
    """One round: who trained, what it cost (clients' sums, traffic, wall time), the scores."""
    flops = _sum_of(clients, "flops", "FLOPs")
    if sampling is not None:  # the server's sampled update of a skipped round (an estimate)
        flops = measure((flops["value"] or 0) + sampling["value"],
                        "; ".join(s for s in (flops.get("source") if clients else None,
                                              sampling["source"]) if s))
    return dict(round=server_round, kind=kind, clients=[c["client"] for c in clients],
                failures=failures, flops=flops, client_time_s=_sum_of(clients, "time_s", "time"),
                energy_j=_sum_of(clients, "energy_j", "energy"),
                wall_s=measure(wall_s, "perf_counter on the server, round start to end"),
                **traffic, metrics=metrics)


def _total(rows: list[dict], key: str) -> dict:
    vals = [r[key]["value"] for r in rows]
    srcs = sorted({r[key]["source"] for r in rows if r[key].get("source")})
    return sum_measure(vals, "sum over rounds of: " + " | ".join(srcs), f"{key} unavailable "
                       "in some round")


def cost_report(cfg, rows: list[dict], settings: dict, run_s: float, complete: bool) -> dict:
    """The whole federation's cost.json (see the module docstring)."""
    energy = _total(rows, "energy_j")
    if energy.get("source") and "rapl" in energy["source"].lower():
        energy["note"] = ("machine-wide meter summed over concurrently running clients: "
                          "overlapping intervals are counted once per client")
    last = rows[-1]["metrics"] if rows else {}
    totals = dict(
        flops=dict(train=_total(rows, "flops")),
        time_s=dict(train=_total(rows, "wall_s"), run=measure(run_s, "perf_counter, server"),
                    clients=_total(rows, "client_time_s")),
        energy_train_j=dict(total=energy),
        epochs=dict(trained=sum(r["kind"] == "trained" for r in rows),
                    skipped=sum(r["kind"] == "skipped" for r in rows)),
        bytes=dict(sent=sum(r["bytes_sent"] for r in rows),
                   received=sum(r["bytes_received"] for r in rows)),
        messages=dict(sent=sum(r["messages_sent"] for r in rows),
                      received=sum(r["messages_received"] for r in rows)),
        client_failures=sum(len(r["failures"]) for r in rows),
    )
    return dict(schema=SCHEMA, run=dict(work_dir=cfg.work_dir, loop="federated rounds",
                                        max_epochs=settings.get("num_rounds"), complete=complete),
                machine=machine_info(), methods=[dict(type="federated", **settings)],
                config=config_summary(cfg), federated=settings, totals=totals, epochs=rows,
                metrics=dict(val=last))


def write_reports(cfg, rows: list[dict], settings: dict, run_s: float, complete: bool) -> None:
    """cost.json (every round) and, at the end, results.json with the last round's metrics."""
    import os.path as osp

    write_json(osp.join(cfg.work_dir, "cost.json"),
               cost_report(cfg, rows, settings, run_s, complete))
    if complete and rows:
        metrics = {k: v for k, v in rows[-1]["metrics"].items()
                   if isinstance(v, float) and math.isfinite(v)}
        write_results(osp.join(cfg.work_dir, "results.json"), metrics, cfg)
