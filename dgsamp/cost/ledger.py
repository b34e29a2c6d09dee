"""The cost ledger: what a run cost, row by row, with the source of every figure.

A `CostLedger` holds `Row`\\ s (an epoch, a window of iterations, a federated client's round:
trained or skipped, with samples, steps, FLOPs / time / energy by phase and a `Source` for each),
the run's `Segment`\\ s (one per process that trained it: a resumed run has several, and a part
whose costs were not recorded is a segment marked unavailable), and what the run was (methods,
machine, settings, config). It knows nothing of mmengine: `dgsamp.engine.cost_hook.CostHook`
fills it from runner events, and anything else (the federated mode, a notebook) can too.

API::

    ledger = CostLedger(run=dict(loop='epoch'), settings={...})
    ledger.begin_segment(start_epoch=0, start_iter=0)
    ledger.add_row(Row(kind='trained', index=1, samples=640, steps=10,
                       flops=dict(forward=1e9, backward=2e9, optimizer=0, sampling=0),
                       sources={'flops': Source('FlopCounterMode')}))
    ledger.current.update(run_s=12.0, train_s=11.0, energy_j={...}, energy_train_j={...})
    ledger.totals()                     # whole-run figures as measures {value, source}
    ledger.to_json(complete=True)       # the cost.json document (schema in `report`)
    ledger.write('cost.json', complete=True)
    state = ledger.state_dict()         # plain types: goes into a checkpoint
    CostLedger().load_state_dict(state)
    CostLedger.merge([a, b], labels=[{'client': 0}, {'client': 1}])  # one ledger of several

Sums follow `report`'s rule: a total over rows of which one lacks the figure is unavailable,
never a partial sum. (Near 400 lines: the record types and the sums over them are one concept,
read together; split apart, the sum rules would sit away from the fields they sum.)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .report import SCHEMA, measure, sum_measure, unavailable, write_json

__all__ = ["ROW_FLOPS", "CostLedger", "Row", "Segment", "Source"]

ROW_FLOPS = ("forward", "backward", "backward_effective", "optimizer", "sampling", "train",
             "train_effective")
ROW_KINDS = ("trained", "skipped")


@dataclass(frozen=True)
class Source:
    """Where a figure came from: ``method`` (the same for every row it applies to), ``detail``
    (what holds for this row only, e.g. '2 of 5 steps counted'), or why it is ``unavailable``.
    Totals name the methods of their rows; details stay in the rows."""

    method: str = ""
    detail: str = ""
    unavailable: str | None = None

    def __str__(self) -> str:
        if self.unavailable is not None:
            return f"unavailable: {self.unavailable}"
        return f"{self.method}, {self.detail}" if self.detail else self.method

    @classmethod
    def of(cls, value: Source | str | dict) -> Source:
        if isinstance(value, Source):
            return value
        return cls(**value) if isinstance(value, dict) else cls(str(value))


@dataclass
class Row:
    """One epoch, window of iterations or federated round: trained, or skipped (GradSamp).

    ``flops``: forward, backward, backward_effective, optimizer, sampling (``train`` and
    ``train_effective`` are filled in as their sums when not given). ``time_s`` / ``energy_j``:
    seconds / joules by phase or meter. ``sources``: a `Source` per field, keyed like
    ``flops``, ``flops.optimizer``, ``time_s.data``, ``energy_j.gpu``; a key without its own
    entry falls back to its group's (``flops``). ``labels``: what else identifies the row
    (``{'client': 3, 'round': 2}``).
    """

    kind: str
    index: int
    iter_start: int = 0
    iter_end: int = 0
    steps: int = 0
    samples: int | None = None
    flops: dict[str, float | None] = field(default_factory=dict)
    time_s: dict[str, float | None] = field(default_factory=dict)
    energy_j: dict[str, float | None] = field(default_factory=dict)
    sparsity: dict[str, float | None] = field(default_factory=dict)
    sources: dict[str, Source] = field(default_factory=dict)
    counted_steps: int = 0
    labels: dict[str, Any] = field(default_factory=dict)
    segment: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ROW_KINDS:
            raise ValueError(f"Row kind {self.kind!r} must be one of {ROW_KINDS}.")
        self.sources = {k: Source.of(v) for k, v in self.sources.items()}
        f = self.flops
        for total, parts in (("train", ("forward", "backward", "optimizer", "sampling")),
                             ("train_effective", ("forward", "backward_effective", "optimizer",
                                                  "sampling"))):
            if total not in f and all(p in f for p in parts):
                vals = [f[p] for p in parts]
                f[total] = None if any(v is None for v in vals) else sum(vals)

    def source(self, key: str) -> Source:
        """The source of ``group.name`` (e.g. ``flops.optimizer``), else of its group."""
        return self.sources.get(key) or self.sources.get(key.split(".")[0], Source())

    def scalars(self) -> dict[str, float]:
        """The row's figures as flat ``cost/*`` scalars (for TensorBoard and the like)."""
        out = {f"cost/{k}_flops": v for k, v in self.flops.items() if v is not None}
        out.update({f"cost/{k}_s": v for k, v in self.time_s.items() if v is not None})
        out.update({f"cost/energy_{k}_j": v for k, v in self.energy_j.items() if v is not None})
        return out

    def summary(self) -> str:
        """One log line: ``[trained]: 170 GFLOP, 7.84 s (data 0.16s, fwd ..), energy 15 J``."""
        f, t, e = self.flops, self.time_s, self.energy_j.get("total")

        def s(k: str) -> str:
            return "n/a" if t.get(k) is None else f"{t[k]:.2f}s"
        gf = "n/a" if f.get("train") is None else f"{f['train'] / 1e9:.3g}"
        eff = f.get("train_effective")
        ge = "" if eff in (None, f.get("train")) else f" (effective {eff / 1e9:.3g})"
        return (f"[{self.kind}]: {gf} GFLOP{ge}, {t.get('epoch', 0.0):.2f} s (data {s('data')}, "
                f"fwd {s('forward')}, bwd {s('backward')}, opt {s('optimizer')}), energy "
                + ("unavailable" if e is None else f"{e:.4g} J"))

    def to_json(self) -> dict[str, Any]:
        out = dict(epoch=self.index, kind=self.kind, iter_start=self.iter_start,
                   iter_end=self.iter_end, iterations=self.steps, samples=self.samples,
                   flops=self.flops, time_s=self.time_s, energy_j=self.energy_j,
                   sparsity=self.sparsity, sources={k: str(s) for k, s in self.sources.items()},
                   flop_counted_steps=self.counted_steps, segment=self.segment)
        if self.labels:
            out["labels"] = self.labels
        return out


@dataclass
class Segment:
    """One stretch of a run in one process: from its start epoch/iteration to the end of its
    last row. ``unavailable`` marks a stretch whose costs were not recorded (a resume from a
    checkpoint written without cost state)."""

    start_epoch: int = 0
    start_iter: int = 0
    end_epoch: int = 0
    end_iter: int = 0
    run_s: float | None = 0.0
    train_s: float | None = 0.0
    val_s: float | None = 0.0
    hook_s: float = 0.0
    energy_j: dict[str, float | None] = field(default_factory=dict)
    energy_train_j: dict[str, float | None] = field(default_factory=dict)
    unavailable: str | None = None

    def update(self, **values: Any) -> None:
        for k, v in values.items():
            if k not in self.__dataclass_fields__:
                raise TypeError(f"Segment has no field {k!r}")
            setattr(self, k, v)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        if self.unavailable is None:
            del d["unavailable"]
        return d


def _sum_values(values: list[float | None]) -> float | None:
    return None if any(v is None for v in values) else sum(values)


@dataclass
class CostLedger:
    """Rows, segments and what the run was; `totals` and `to_json` make the report."""

    rows: list[Row] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)
    run: dict[str, Any] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)
    methods: list[dict[str, Any]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    energy_meters: dict[str, dict[str, Any]] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)  # e.g. overhead.note, energy totals
    # what several segments are, in the totals' sources: the parts of a resumed run, or what
    # `merge` joined (a federated round's clients)
    segment_kind: str = "resumed run"

    # ------------------------------------------------------------------ filling it
    def begin_segment(self, start_epoch: int = 0, start_iter: int = 0) -> Segment:
        seg = Segment(start_epoch=start_epoch, start_iter=start_iter, end_epoch=start_epoch,
                      end_iter=start_iter)
        self.segments.append(seg)
        return seg

    @property
    def current(self) -> Segment:
        if not self.segments:
            self.begin_segment()
        return self.segments[-1]

    def add_row(self, row: Row | None = None, **fields_: Any) -> Row:
        """Append ``row`` (or ``Row(**fields_)``) to the current segment."""
        if row is None:
            row = Row(**fields_)
        elif fields_:
            raise TypeError("add_row takes a Row or its fields, not both")
        row.segment = len(self.segments) - 1 if self.segments else 0
        self.rows.append(row)
        return row

    def add_unrecorded(self, start_epoch: int, start_iter: int, end_epoch: int, end_iter: int,
                       reason: str) -> Segment:
        """Record that a stretch of the run ran without a ledger (its costs are unknown)."""
        seg = Segment(start_epoch=start_epoch, start_iter=start_iter, end_epoch=end_epoch,
                      end_iter=end_iter, run_s=None, train_s=None, val_s=None,
                      unavailable=reason)
        self.segments.append(seg)
        return seg

    # ------------------------------------------------------------------ totals
    def _gap(self) -> str | None:
        gaps = [s for s in self.segments if s.unavailable]
        if not gaps:
            return None
        s = gaps[0]
        return (f"epochs {s.start_epoch}-{s.end_epoch} (iterations {s.start_iter}-{s.end_iter}) "
                f"were not recorded: {s.unavailable}")

    def _flops_total(self, key: str) -> dict[str, Any]:
        methods: list[str] = []
        for r in self.rows:
            if not r.flops.get(key):
                continue  # rows with 0 of it (e.g. sampling in trained epochs) add nothing
            m = r.source(f"flops.{key}").method
            if m not in methods:
                methods.append(m)
        return sum_measure((r.flops.get(key) for r in self.rows),
                           "sum over epochs of: " + ("; ".join(methods) or "0"),
                           f"{key} not counted in some epochs")

    def _time_total(self, key: str, source: str) -> dict[str, Any]:
        return sum_measure((r.time_s.get(key) for r in self.rows), source,
                           f"{key} not measured in some epochs")

    def _segment_total(self, key: str, source: str) -> dict[str, Any]:
        vals = [getattr(s, key) for s in self.segments]
        if len(self.segments) > 1:
            source += f", summed over {len(self.segments)} segments ({self.segment_kind})"
        return measure(_sum_values(vals), source, f"{key} not measured in some segments")

    def _energy_total(self, key: str, what: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        segs = [getattr(s, key) for s in self.segments]
        for m, info in self.energy_meters.items():
            v = _sum_values([e.get(m) for e in segs]) if segs else None
            out[m] = (measure(v, f"{info['source']}, {what}")
                      if info.get("available") and v is not None
                      else unavailable(info.get("unavailable") or "meter failed"))
        total = _sum_values([e.get("total") for e in segs]) if segs else None
        src = self.notes.get("energy_total_source") or "unavailable: no energy meter"
        out["total"] = measure(total, src) if total is not None else unavailable(src)
        return out

    def totals(self) -> dict[str, Any]:
        """Whole-run figures: FLOPs and phase times summed over rows, run/train/validation time
        and energy over segments. A run with an unrecorded part has no whole-run figure."""
        rows = self.rows
        t: dict[str, Any] = dict(
            flops={k: self._flops_total(k) for k in ROW_FLOPS},
            time_s=dict(
                run=self._segment_total("run_s", "perf_counter, before_run to report"),
                train=self._segment_total("train_s", "perf_counter, before_train to after_train"),
                data=self._time_total("data", "sum of epoch rows (mmengine IterTimerHook "
                                      "train/data_time)"),
                forward=self._time_total("forward", "sum of epoch rows (sampled phase split)"),
                backward=self._time_total("backward", "sum of epoch rows (sampled phase split)"),
                optimizer=self._time_total("optimizer",
                                           "sum of epoch rows (sampled phase split)"),
                other=self._time_total("other", "sum of epoch rows"),
                val=self._segment_total("val_s",
                                        "perf_counter, before_val_epoch to after_val_epoch"),
            ),
            energy_j=self._energy_total("energy_j", "whole run"),
            energy_train_j=self._energy_total("energy_train_j", "training"),
            epochs=dict(trained=sum(r.kind == "trained" for r in rows),
                        skipped=sum(r.kind == "skipped" for r in rows)),
            iterations=sum(r.steps for r in rows),
            samples=_sum_values([r.samples for r in rows]),
        )
        grid = self.settings.get("grid_gco2_per_kwh")
        if grid is not None:
            t["co2e_g"] = {}
            for what, key in (("run", "energy_j"), ("train", "energy_train_j")):
                e = t[key]["total"]
                t["co2e_g"][what] = measure(
                    None if e["value"] is None else e["value"] / 3.6e6 * grid,
                    f"derived: {key}.total ({e['source']}) x grid intensity {grid:g} gCO2/kWh "
                    "given in the settings", f"{key}.total unavailable")
        gap = self._gap()
        if gap:
            t = _unavailable_all(t, gap)
        return t

    def overhead(self) -> dict[str, Any]:
        measuring = _sum_values([r.time_s.get("measuring_overhead", 0.0) for r in self.rows])
        hook = sum(s.hook_s for s in self.segments)
        own = None if measuring is None else hook + measuring
        run_s = _sum_values([s.run_s for s in self.segments])
        return dict(
            seconds=measure(own, "perf_counter: FLOP-counted steps' excess over the median "
                            "step + time inside the hook's own callbacks"),
            fraction_of_run=measure(own / run_s if own is not None and run_s else None,
                                    "overhead seconds / run seconds"),
            flop_counted_steps=sum(r.counted_steps for r in self.rows),
            note=self.notes.get("overhead", "A/B measurement (runs with and without CostHook): "
                                "docs/cost.md"),
        )

    # ------------------------------------------------------------------ output
    def to_json(self, complete: bool) -> dict[str, Any]:
        """The ``cost.json`` document (schema: `dgsamp.cost.report`)."""
        run = dict(self.run, complete=complete, resumed=len(self.segments) > 1,
                   segments=[s.to_json() for s in self.segments])
        return dict(schema=SCHEMA, run=run, machine=self.machine, methods=self.methods,
                    config=self.config, settings=self.settings,
                    energy_meters=self.energy_meters, totals=self.totals(),
                    epochs=[r.to_json() for r in self.rows], overhead=self.overhead(),
                    metrics=self.metrics)

    def write(self, path: str, complete: bool) -> None:
        write_json(path, self.to_json(complete))

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Rows and segments as plain types (a checkpoint loads them with weights_only)."""
        return dict(version=1, rows=[_row_state(r) for r in self.rows],
                    segments=[asdict(s) for s in self.segments], metrics=self.metrics)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Put a saved run's rows and segments *before* this ledger's own."""
        if state.get("version") != 1:
            raise ValueError(f"cost ledger state version {state.get('version')!r} is not 1; it "
                             "was saved by another dgsamp version.")
        rows = [Row(**r) for r in state["rows"]]
        segs = [Segment(**s) for s in state["segments"]]
        for r in self.rows:
            r.segment += len(segs)
        self.rows = rows + self.rows
        self.segments = segs + self.segments
        self.metrics = {**state.get("metrics", {}), **self.metrics}

    @classmethod
    def merge(cls, ledgers: list[CostLedger], labels: list[dict[str, Any]] | None = None,
              segment_kind: str = "merged ledgers") -> CostLedger:
        """One ledger holding the rows and segments of several (clients of a federated round,
        say), each row tagged with its ledger's ``labels``; run facts come from the first.
        Segment times add up (client-seconds when they ran side by side); ``segment_kind``
        names the segments in the totals' sources."""
        if not ledgers:
            raise ValueError("merge needs at least one ledger")
        if labels is not None and len(labels) != len(ledgers):
            raise ValueError(f"{len(labels)} labels for {len(ledgers)} ledgers")
        first = ledgers[0]
        out = cls(run=dict(first.run), machine=first.machine, methods=first.methods,
                  config=first.config, settings=first.settings,
                  energy_meters=first.energy_meters, notes=dict(first.notes),
                  segment_kind=segment_kind)
        for i, led in enumerate(ledgers):
            base = len(out.segments)
            out.segments += [Segment(**asdict(s)) for s in led.segments]
            out.rows += [Row(**dict(_row_state(r), segment=r.segment + base,
                                    labels={**r.labels, **(labels[i] if labels else {})}))
                         for r in led.rows]
        return out


def _row_state(r: Row) -> dict[str, Any]:
    d = {f.name: getattr(r, f.name) for f in fields(r)}
    d["sources"] = {k: asdict(s) for k, s in r.sources.items()}
    return d


def _unavailable_all(totals: dict[str, Any], reason: str) -> dict[str, Any]:
    """Every whole-run figure of ``totals`` unavailable for ``reason`` (a part is missing)."""
    def walk(v: Any) -> Any:
        if isinstance(v, dict) and "value" in v:
            return unavailable(reason)
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        return None
    out = walk(totals)
    out["unavailable"] = reason
    return out
