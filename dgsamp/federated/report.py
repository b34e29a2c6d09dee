"""What a federation cost and scored, per round and in total: ``cost.json`` and ``results.json``.

Costs are `dgsamp.cost.ledger.CostLedger`\\ s all the way: every client sends its round's
ledger (CostHook's, as plain types) with its reply; a round's ledger is the merge of its
clients' (rows labelled with client and round) plus, on a round GradSamp skipped, one server
row holding the sampled update's FLOPs (an estimate, labelled); the federation's ledger is the
merge of its rounds'. Its ``to_json`` is ``cost.json`` (schema ``dgsamp.cost/1``, read by
tools/compare.py), so sums follow the ledger's rule: one client without a figure makes the sum
unavailable. ``totals.time_s.train`` is then client-seconds (clients' training time summed);
the server's wall time of the rounds is ``totals.time_s.wall``. Next to it, ``federated`` holds
the settings and one row per round (clients, failures, bytes and messages, wall time, the
round's FLOPs / client time / energy, the global model's accuracy on every domain).

Energy: clients' meters are summed. When clients share one machine and run side by side (the
simulation), a machine-wide meter (RAPL) counts the overlap once per client; ``cost.json``
notes it next to the total.
"""

from __future__ import annotations

import math
import os.path as osp

from ..cost.ledger import CostLedger, Row, Source
from ..cost.report import config_summary, measure, to_jsonable, write_json
from ..evaluation.report import write_results

_RUN_FACTS = ("machine", "methods", "config", "settings", "energy_meters", "notes", "run")


def ledger_payload(ledger: CostLedger) -> dict:
    """A client's ledger as plain types, for its reply (``ledger_from_payload`` reads it)."""
    return to_jsonable(dict(state=ledger.state_dict(),
                            **{k: getattr(ledger, k) for k in _RUN_FACTS}))


def ledger_from_payload(payload: dict) -> CostLedger:
    ledger = CostLedger(**{k: payload.get(k) or {} for k in _RUN_FACTS
                           if k not in ("methods",)}, methods=payload.get("methods") or [])
    ledger.load_state_dict(payload["state"])
    return ledger


def skip_row(server_round: int, sampling: tuple[int, str], seconds: float) -> Row:
    """The server's row for a round GradSamp skipped: no client ran; the sample's FLOPs."""
    flops, source = sampling
    zero = dict(forward=0, backward=0, backward_effective=0, optimizer=0)
    return Row(kind="skipped", index=server_round, samples=0,
               flops=dict(zero, sampling=flops),
               time_s=dict(data=0.0, forward=0.0, backward=0.0, optimizer=0.0, other=seconds,
                           epoch=seconds),
               sources=dict(flops=Source("server, no client contacted"),
                            **{"flops.sampling": Source(source)}),
               labels=dict(round=server_round, server=True))


def round_ledger(server_round: int, clients: list[dict], skipped: Row | None) -> CostLedger:
    """The round's clients' ledgers merged (rows labelled client/round), or the skip row."""
    if clients:
        ledger = CostLedger.merge(
            [ledger_from_payload(c["ledger"]) for c in clients],
            labels=[dict(client=c["client"], round=server_round) for c in clients],
            segment_kind="client rounds")
    else:
        ledger = CostLedger()
    if skipped is not None:
        ledger.add_row(skipped)
    return ledger


def round_row(server_round: int, kind: str, clients: list[dict], failures: list[dict],
              traffic: dict, wall_s: float, metrics: dict, skipped: Row | None = None) -> dict:
    """One round: who trained, its ledger, traffic, wall time, the global model's scores."""
    totals = round_ledger(server_round, clients, skipped).totals()
    return dict(round=server_round, kind=kind, clients=[c["client"] for c in clients],
                failures=failures, flops=totals["flops"]["train"],
                client_time_s=totals["time_s"]["train"],
                energy_j=totals["energy_train_j"]["total"],
                wall_s=measure(wall_s, "perf_counter on the server, round start to end"),
                **traffic, metrics=metrics, ledgers=clients,
                skip_row=None if skipped is None else dict(seconds=skipped.time_s["other"],
                                                           flops=skipped.flops["sampling"],
                                                           source=str(skipped.source(
                                                               "flops.sampling"))))


def _skip_of(row: dict) -> Row | None:
    s = row.get("skip_row")
    return None if s is None else skip_row(row["round"], (s["flops"], s["source"]), s["seconds"])


def federation_ledger(cfg, rows: list[dict], settings: dict) -> CostLedger:
    """Every round's ledger merged into one, with the federation's run facts."""
    parts = [round_ledger(r["round"], r["ledgers"], _skip_of(r)) for r in rows]
    ledger = CostLedger.merge(parts, segment_kind="client rounds") if parts else CostLedger()
    donor = next((p for p in parts if p.energy_meters), None)
    if donor is not None:  # run facts of a client (merge takes the first part's)
        ledger.energy_meters, ledger.notes, ledger.machine = (donor.energy_meters, donor.notes,
                                                              donor.machine)
    ledger.run = dict(work_dir=cfg.work_dir, loop="federated rounds",
                      max_epochs=settings.get("num_rounds"))
    ledger.methods = [dict(type="federated", **to_jsonable(settings))]
    ledger.config, ledger.settings = config_summary(cfg), to_jsonable(settings)
    return ledger


def cost_report(cfg, rows: list[dict], settings: dict, run_s: float, complete: bool) -> dict:
    """The whole federation's cost.json (see the module docstring)."""
    ledger = federation_ledger(cfg, rows, settings)
    ledger.metrics = dict(val=rows[-1]["metrics"]) if rows else {}
    report = ledger.to_json(complete)
    totals = report["totals"]
    totals["epochs"] = dict(trained=sum(r["kind"] == "trained" for r in rows),
                            skipped=sum(r["kind"] == "skipped" for r in rows),
                            unit="rounds", client_rounds=sum(len(r["clients"]) for r in rows))
    totals["time_s"]["wall"] = measure(sum(r["wall_s"]["value"] for r in rows),
                                       "perf_counter on the server, sum of the rounds")
    totals["time_s"]["server_run"] = measure(run_s, "perf_counter on the server, whole run")
    energy = totals.get("energy_train_j", {}).get("total", {})
    if "rapl" in str(energy.get("source", "")).lower():
        energy["note"] = ("machine-wide meter summed over clients that may have run side by "
                          "side: overlapping intervals are counted once per client")
    totals["bytes"] = dict(sent=sum(r["bytes_sent"] for r in rows),
                           received=sum(r["bytes_received"] for r in rows))
    totals["messages"] = dict(sent=sum(r["messages_sent"] for r in rows),
                              received=sum(r["messages_received"] for r in rows))
    totals["client_failures"] = sum(len(r["failures"]) for r in rows)
    report["federated"] = dict(settings=to_jsonable(settings), rounds=[
        {k: v for k, v in r.items() if k not in ("ledgers", "skip_row")} for r in rows])
    return report


def write_reports(cfg, rows: list[dict], settings: dict, run_s: float, complete: bool) -> None:
    """cost.json (every round) and, at the end, results.json with the last round's metrics."""
    write_json(osp.join(cfg.work_dir, "cost.json"),
               cost_report(cfg, rows, settings, run_s, complete))
    if complete and rows:
        metrics = {k: v for k, v in rows[-1]["metrics"].items()
                   if isinstance(v, float) and math.isfinite(v)}
        write_results(osp.join(cfg.work_dir, "results.json"), metrics, cfg)
