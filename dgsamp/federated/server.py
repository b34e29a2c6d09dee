"""The federation's round loop on the server, on any Flower grid (simulation or deployment).

Per round: GradSamp server mode may skip it (no message to any client: the global model moves
by a sample, `ServerGradSamp`); otherwise the Flower strategy configures the round, the grid
carries the messages, the strategy aggregates the replies (failed clients are logged and left
out by Flower's own reply check). Then the server evaluates the global model on every domain
(held-out ones included), writes the round's checkpoint (global model, strategy and GradSamp
state, the rows so far) and the reports. ``resume=True`` continues from the last checkpoint
exactly as the uninterrupted run: clients are seeded by (client, round), the sampling RNG by the
round, replies are aggregated in client order.

The loop is Flower's `Strategy.start` unrolled, because a skipped round must not call the
strategy at all and every round ends in a checkpoint.
"""

from __future__ import annotations

import copy
import json
import os
import os.path as osp
import random
import time

import torch
from mmengine.config import Config

from ..cost.flops import sampling_flops
from ..engine.runner_utils import unique_experiment_name, unwrap_model
from .report import round_row, skip_row, write_reports
from .server_gradsamp import ServerGradSamp
from .settings import FLSettings
from .strategies import CountingGrid, build_strategy

CHECKPOINT = "round_{}.pth"
LAST = "last_checkpoint"
KEEP_CHECKPOINTS = 2


class GlobalEvaluator:
    """The config's model, validation loader and metric, for the global model (no training)."""

    def __init__(self, cfg: Config):
        from mmengine.runner import Runner

        c = copy.deepcopy(cfg)
        c.pop("fl", None)
        for key in ("train_dataloader", "train_cfg", "optim_wrapper", "param_scheduler",
                    "test_dataloader", "test_cfg", "test_evaluator"):
            c[key] = None
        c.custom_hooks = []
        c.default_hooks = dict(logger=None, checkpoint=None, param_scheduler=None)
        c.load_from, c.resume = None, False
        c.experiment_name = unique_experiment_name(c.get("experiment_name") or "server")
        self.runner = Runner.from_cfg(c)
        self.model = unwrap_model(self.runner.model)
        self.logger = self.runner.logger

    def initial_state(self) -> dict[str, torch.Tensor]:
        """The config's freshly initialised model (seeded by ``randomness``)."""
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def trainable_keys(self) -> list[str]:
        return [n for n, p in self.model.named_parameters() if p.requires_grad]

    def evaluate(self, state: dict[str, torch.Tensor], server_round: int) -> dict[str, float]:
        self.model.load_state_dict(state)
        metrics = {k: float(v) for k, v in self.runner.val_loop.run().items()}
        self.runner.visualizer.add_scalars(metrics, step=server_round)
        return metrics


def _save(work_dir: str, server_round: int, payload: dict) -> None:
    path = osp.join(work_dir, CHECKPOINT.format(server_round))
    torch.save(payload, f"{path}.tmp")
    os.replace(f"{path}.tmp", path)
    with open(osp.join(work_dir, LAST), "w") as fh:
        fh.write(path)
    old = osp.join(work_dir, CHECKPOINT.format(server_round - KEEP_CHECKPOINTS))
    if osp.exists(old):
        os.remove(old)


def load_last_checkpoint(work_dir: str) -> dict | None:
    """The latest round checkpoint of ``work_dir`` (None if there is none)."""
    last = osp.join(work_dir, LAST)
    if not osp.isfile(last):
        return None
    with open(last) as fh:
        path = fh.read().strip()
    # our own file, holding the strategy's state (plain Python objects): not weights-only
    return torch.load(path, map_location="cpu", weights_only=False)


def _strategy_state(strategy) -> dict:
    return {k: v for k, v in vars(strategy).items() if not callable(v)}


def _client_replies(replies: list) -> tuple[list, list[dict]]:
    """(successful replies in client order, failures as dicts)."""
    ok = [m for m in replies if not m.has_error()]
    failures = [dict(node=int(m.metadata.src_node_id), reason=str(m.error.reason))
                for m in replies if m.has_error()]
    ok.sort(key=lambda m: int(m.content["cost"]["client"]))
    return ok, failures


def run_federation(grid, cfg: Config, resume: bool = False) -> list[dict]:
    """Run (or resume) the federation ``cfg.fl`` describes on ``grid``; the round rows."""
    from flwr.app import ArrayRecord, ConfigRecord

    from .partition import num_clients_of

    fl = FLSettings.from_cfg(cfg)
    os.makedirs(cfg.work_dir, exist_ok=True)
    t_run = time.perf_counter()
    evaluator = GlobalEvaluator(cfg)
    log = evaluator.logger
    train_set = training_view(cfg)
    num_clients = num_clients_of(fl.clients, train_set)
    strategy, keep_norm_local = build_strategy(fl.strategy, num_clients, fl.fraction_train)
    gradsamp = None
    if fl.gradsamp is not None and fl.gradsamp["mode"] == "server":
        gradsamp = ServerGradSamp({k: v for k, v in fl.gradsamp.items() if k != "mode"},
                                  evaluator.trainable_keys(), fl.num_rounds)
    state, rows, start = evaluator.initial_state(), [], 1
    ckpt = load_last_checkpoint(cfg.work_dir) if resume else None
    if ckpt is not None:
        state, rows, start = ckpt["state"], ckpt["rows"], ckpt["round"] + 1
        vars(strategy).update(ckpt["strategy"])
        if gradsamp is not None:
            gradsamp.load_state_dict(ckpt["gradsamp"])
        log.info(f"[fl] resumed after round {ckpt['round']}")
    settings = dict(vars(fl), num_clients=num_clients, keep_norm_local=keep_norm_local)
    counting = CountingGrid(grid)
    cfg_text = cfg.pretty_text
    seed = int((cfg.get("randomness") or {}).get("seed") or 0)
    for rnd in range(start, fl.num_rounds + 1):
        t0 = time.perf_counter()
        kind, clients, failures, skipped = "trained", [], [], None
        if gradsamp is not None and gradsamp.should_skip(rnd):
            stats = gradsamp.skip(state, rnd)
            if stats["status"] == "applied":
                kind = "skipped"
                skipped = skip_row(rnd, sampling_flops(evaluator.model), time.perf_counter() - t0)
                log.info(f"[fl] round {rnd}/{fl.num_rounds} skipped by GradSamp: no client "
                         f"contacted (sigma_mean={stats['sigma_mean']:.3e})")
            else:
                log.warning(f"[fl] round {rnd}: GradSamp sample refused ({stats.get('reason')});"
                            " training the round")
        if kind == "trained":
            random.seed(seed * 100003 + rnd)  # Flower samples nodes with `random`
            config = ConfigRecord({"dgsamp-config": cfg_text, "work-dir": cfg.work_dir,
                                   "keep-norm-local": keep_norm_local})
            messages = strategy.configure_train(rnd, ArrayRecord(state), config, counting)
            replies = counting.send_and_receive(messages, timeout=fl.timeout)
            ok, failures = _client_replies(replies)
            for f in failures:
                log.warning(f"[fl] round {rnd}: client on node {f['node']} failed: "
                            f"{f['reason'][-500:]}")
            if failures and not ok:  # a federation of failing clients is no result at all
                raise RuntimeError(
                    f"Round {rnd}: every client failed, e.g. {failures[0]['reason'][-800:]}. "
                    f"Rounds 1..{rnd - 1} are checkpointed: fix the cause and rerun with "
                    "--resume.")
            arrays, _ = strategy.aggregate_train(rnd, ok)
            if arrays is None:
                log.error(f"[fl] round {rnd}: no client reply to aggregate; the global model "
                          "stays as it was")
            else:
                state = arrays.to_torch_state_dict()
                if gradsamp is not None:
                    gradsamp.observe(state, rnd)
            clients = [json.loads(m.content["cost"]["summary"]) for m in ok]
        metrics = evaluator.evaluate(state, rnd)
        rows.append(round_row(rnd, kind, clients, failures, counting.take(),
                              time.perf_counter() - t0, metrics, skipped))
        log.info(f"[fl] round {rnd}/{fl.num_rounds} ({kind}): "
                 + " ".join(f"{k}={v:.2f}" for k, v in metrics.items()))
        _save(cfg.work_dir, rnd, dict(round=rnd, state=state, rows=rows,
                                      strategy=_strategy_state(strategy),
                                      gradsamp=gradsamp.state_dict() if gradsamp else None))
        write_reports(cfg, rows, settings, time.perf_counter() - t_run,
                      complete=rnd == fl.num_rounds)
    return rows


def training_view(cfg: Config):
    """The config's training data set (for the number of clients; labels are not read)."""
    from mmengine.registry import DATASETS

    return DATASETS.build(copy.deepcopy(cfg.train_dataloader.dataset))
