"""Federated training on Flower (dgsamp.federated): rounds, strategies, GradSamp, resume, errors.

Most tests run the ServerApp's round loop and the real ClientApp in this process through
`LocalGrid`, a stand-in for Flower's grid that delivers each message to the ClientApp directly
and turns a raising ClientApp into an error reply as Flower's simulation runtime does. One slow
test runs the whole thing in Flower's simulation engine (Ray) through tools/train_fl.py.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
FL_CONFIG = str(ROOT / "configs" / "fl" / "fedavg_rotated_digits.py")

pytest.importorskip("flwr")  # noqa: E402  (installed by make install: flwr[simulation])
from flwr.app import Context, Error, Message, RecordDict  # noqa: E402
from mmengine.hooks import Hook  # noqa: E402
from mmengine.registry import HOOKS  # noqa: E402

import dgsamp  # noqa: E402, F401
from dgsamp.federated import partition_indices  # noqa: E402
from dgsamp.federated.app import client_app, client_index  # noqa: E402
from dgsamp.federated.launch import load_config  # noqa: E402
from dgsamp.federated.server import load_last_checkpoint, run_federation  # noqa: E402
from dgsamp.federated.settings import FLSettings  # noqa: E402

ALL = ["0", "15", "30", "45", "60", "75"]


class LocalGrid:
    """Flower's grid for tests: every message goes straight to the ClientApp (see top)."""

    def __init__(self, num_nodes: int, stop_at_round: int | None = None):
        from flwr.supercore.task_identity import TaskIdentity

        TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 1
        self.contexts = {
            100 + i: Context(run_id=1, node_id=100 + i, state=RecordDict(), run_config={},
                             node_config={"partition-id": i, "num-partitions": num_nodes})
            for i in range(num_nodes)}
        self.stop_at_round = stop_at_round
        self.sent: list[Message] = []
        self.replies: list[Message] = []

    def get_node_ids(self):
        return list(self.contexts)

    def send_and_receive(self, messages, *, timeout=None):
        replies = []
        for m in messages:
            if int(m.content["config"]["server-round"]) == self.stop_at_round:
                raise KeyboardInterrupt("the server dies here")
            self.sent.append(m)
            try:
                replies.append(client_app(m, self.contexts[m.metadata.dst_node_id]))
            except Exception as e:  # what Flower's runtime does with a raising ClientApp
                replies.append(Message(Error(code=2, reason=f"{type(e)}:<'{e}'>"), reply_to=m))
        self.replies += replies
        return replies


def fl_config(work_dir, train_domains=("0",), **fl):
    """The FL config on few training domains, small images, no LR steps, quiet clients."""
    test = [d for d in ALL if d not in train_domains]
    opts = {"train_dataloader.dataset.test_domains": test,
            "val_dataloader.dataset.test_domains": test,
            "train_dataloader.dataset.image_size": 12, "val_dataloader.dataset.image_size": 12,
            "train_dataloader.batch_size": 64, "param_scheduler": [],
            "fl.num_rounds": 1, **{f"fl.{k}": v for k, v in fl.items()}}
    return load_config(FL_CONFIG, str(work_dir), opts)


def states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# -- equality with centralized training, FedAvg -------------------------------------------------
def test_one_client_one_round_equals_one_centralized_epoch(tmp_path):
    from mmengine.runner import Runner

    cfg = fl_config(tmp_path / "fl")
    run_federation(LocalGrid(1), cfg)
    fed = load_last_checkpoint(cfg.work_dir)["state"]

    central = copy.deepcopy(cfg)
    central.pop("fl")
    central.work_dir = str(tmp_path / "central")
    central.train_cfg.max_epochs = 1
    runner = Runner.from_cfg(central)
    runner.train()
    assert states_equal(fed, runner.model.state_dict())


def test_fedavg_is_the_weighted_average_of_two_clients(tmp_path):
    cfg = fl_config(tmp_path, train_domains=("0", "15"), clients=2, partition="dirichlet",
                    alpha=0.5)
    grid = LocalGrid(2)
    run_federation(grid, cfg)
    got = load_last_checkpoint(cfg.work_dir)["state"]
    (a, b) = sorted(grid.replies, key=lambda m: int(m.content["cost"]["client"]))
    na, nb = (int(m.content["metrics"]["num-examples"]) for m in (a, b))
    assert na != nb  # a real weighting
    wa, wb = a.content["arrays"].to_torch_state_dict(), b.content["arrays"].to_torch_state_dict()
    for k, v in got.items():
        if v.is_floating_point():
            torch.testing.assert_close(v, (na * wa[k] + nb * wb[k]) / (na + nb))


# -- GradSamp server mode and resume ----------------------------------------------------------
GS = dict(num_rounds=4, gradsamp=dict(mode="server", every=2, warmup=2))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    cfg = fl_config(tmp_path_factory.mktemp("full"), **GS)
    grid = LocalGrid(1)
    rows = run_federation(grid, cfg)
    return cfg, grid, rows


def test_server_skipped_round_contacts_no_client(uninterrupted):
    _, grid, rows = uninterrupted
    assert [r["kind"] for r in rows] == ["trained", "trained", "skipped", "trained"]
    assert sorted(int(m.content["config"]["server-round"]) for m in grid.sent) == [1, 2, 4]
    skipped = rows[2]
    assert skipped["messages_sent"] == skipped["bytes_sent"] == skipped["bytes_received"] == 0
    assert rows[1]["bytes_sent"] > 0 and rows[1]["messages_sent"] == 1
    # the sampled round moved the model: its accuracy is its own
    assert skipped["metrics"] != rows[1]["metrics"]
    cost = json.loads(Path(uninterrupted[0].work_dir, "cost.json").read_text())
    assert cost["totals"]["epochs"] == dict(trained=3, skipped=1, unit="rounds", client_rounds=3)
    assert cost["totals"]["flops"]["train"]["value"] > 0  # clients' FLOPs + the sample's
    assert cost["run"]["complete"]


def test_resume_after_a_skipped_round_is_exact(uninterrupted, tmp_path):
    full_cfg, _, full_rows = uninterrupted
    cfg = fl_config(tmp_path, **GS)
    with pytest.raises(KeyboardInterrupt):
        run_federation(LocalGrid(1, stop_at_round=4), cfg)
    assert load_last_checkpoint(cfg.work_dir)["round"] == 3  # died after the skipped round
    rows = run_federation(LocalGrid(1), cfg, resume=True)
    assert states_equal(load_last_checkpoint(cfg.work_dir)["state"],
                        load_last_checkpoint(full_cfg.work_dir)["state"])
    assert [r["metrics"] for r in rows] == [r["metrics"] for r in full_rows]


# -- data: partitions, target labels ------------------------------------------------------------
def test_partitions_cover_every_item_once():
    import numpy as np

    rng = np.random.RandomState(0)
    domains, labels = rng.randint(0, 3, 500), rng.randint(0, 10, 500)
    for clients, part in [("domains", "iid"), (4, "iid"), (4, "dirichlet")]:
        parts = partition_indices(domains, labels, clients, part, alpha=0.3, seed=1)
        assert sorted(np.concatenate(parts).tolist()) == list(range(500))
    by_domain = partition_indices(domains, labels, "domains")
    assert [set(domains[p]) for p in by_domain] == [{0}, {1}, {2}]


def test_clients_never_read_target_domain_labels(tmp_path, monkeypatch):
    from dgsamp.datasets import benchmarks, digits
    from dgsamp.datasets.multidomain import Domain

    class Guarded(Domain):
        def __getattribute__(self, name):
            if name == "labels":
                raise AssertionError("a target-domain label was read")
            return super().__getattribute__(name)

    def guarded(seed=0, image_size=28, cache_dir=None):
        doms = digits.rotated_digits(seed, image_size, cache_dir)
        return [Guarded(d.name, d.images, d.__dict__["labels"]) if d.name not in ("0", "15")
                else d for d in doms]

    monkeypatch.setattr(benchmarks.RotatedDigits, "make_domains", staticmethod(guarded))
    from dgsamp.federated.client import train_client

    for clients, partition in [("domains", "iid"), (3, "dirichlet")]:
        cfg = fl_config(tmp_path / str(clients), train_domains=("0", "15"), clients=clients,
                        partition=partition)
        fl = FLSettings.from_cfg(cfg)
        from mmengine.registry import MODELS

        model = MODELS.build(cfg.model)
        out = train_client(cfg, fl, 1, 1, model.state_dict(), str(tmp_path / f"c{clients}"))
        assert out.num_examples > 0


# -- failures and bad input ---------------------------------------------------------------------
@HOOKS.register_module()
class FailOnceHook(Hook):
    """Raises in client 1's round 2 (test helper)."""

    def before_train(self, runner):
        if runner.experiment_name.startswith("client1_round2"):
            raise RuntimeError("client 1 lost its disk")


def test_a_failing_client_leaves_the_round_to_the_others(tmp_path):
    cfg = fl_config(tmp_path, train_domains=("0", "15"), num_rounds=2)
    cfg.custom_hooks = [dict(type="FailOnceHook")]
    grid = LocalGrid(2)
    rows = run_federation(grid, cfg)
    assert [len(r["failures"]) for r in rows] == [0, 1]
    assert "client 1 lost its disk" in rows[1]["failures"][0]["reason"]
    assert rows[1]["clients"] == [0] and rows[1]["kind"] == "trained"
    survivor = [m for m in grid.replies[2:] if not m.has_error()]
    assert states_equal(load_last_checkpoint(cfg.work_dir)["state"],
                        survivor[0].content["arrays"].to_torch_state_dict())
    log = next(Path(cfg.work_dir).glob("*/*.log")).read_text()
    assert "client 1 lost its disk" in log


def test_two_federations_in_one_second_keep_their_own_logs(tmp_path, monkeypatch):
    """mmengine reuses a logger whose name (experiment + second) repeats: the server's name is
    unique, so a second federation within the same second still writes its own log."""
    import mmengine.runner.runner as runner_module

    from dgsamp.federated.server import GlobalEvaluator

    monkeypatch.setattr(runner_module.time, "strftime", lambda *a, **k: "20261206_000000")
    first, second = (GlobalEvaluator(fl_config(tmp_path / name)) for name in ("a", "b"))
    assert first.logger is not second.logger
    for name in ("a", "b"):
        assert list((tmp_path / name).glob("*/*.log")), name


@HOOKS.register_module()
class AlwaysFailHook(Hook):
    def before_train(self, runner):
        raise RuntimeError("no client can train")


def test_a_round_where_every_client_fails_stops_the_run(tmp_path):
    cfg = fl_config(tmp_path)
    cfg.custom_hooks = [dict(type="AlwaysFailHook")]
    with pytest.raises(RuntimeError, match="every client failed.*no client can train"):
        run_federation(LocalGrid(1), cfg)
    assert not Path(cfg.work_dir, "results.json").exists()


def test_bad_input_is_refused_with_the_fix(tmp_path):
    with pytest.raises(ValueError, match="num_rounds"):
        fl_config(tmp_path, num_rounds=0)
    with pytest.raises(ValueError, match=r"Available: \[.*'FedAvg'.*'FedBN'.*'FedProx'"):
        fl_config(tmp_path, strategy=dict(type="FedAverage"))
    cfg = fl_config(tmp_path)
    cfg5 = load_config(FL_CONFIG, str(tmp_path))  # clients='domains': 5 training domains
    with pytest.raises(ValueError, match="clients='domains' gives 5 clients"):
        client_index({"partition-id": 6, "num-partitions": 7}, cfg5,
                     FLSettings.from_cfg(cfg5))
    with pytest.raises(ValueError, match="partition-id"):
        client_index({}, cfg, FLSettings.from_cfg(cfg))
    with pytest.raises(ValueError, match="local_epochs"):
        fl_config(tmp_path, gradsamp=dict(mode="client", every=4))


# -- the simulation engine end to end -----------------------------------------------------------
@pytest.mark.slow
def test_train_fl_in_flowers_simulation_engine(tmp_path):
    sys.path.insert(0, str(ROOT / "tools"))
    import compare
    import train_fl

    test = "[2,3,4,5]"  # indices: the domains 30..75 (DictAction reads '30' as a number)
    train_fl.main([FL_CONFIG, "--work-dir", str(tmp_path), "--cfg-options",
                   f"train_dataloader.dataset.test_domains={test}",
                   f"val_dataloader.dataset.test_domains={test}",
                   "train_dataloader.dataset.image_size=12",
                   "val_dataloader.dataset.image_size=12", "fl.num_rounds=2",
                   "fl.strategy.type=FedBN"])
    results = json.loads((tmp_path / "results.json").read_text())
    assert {"acc/0", "acc/15", "acc/75", "acc/test_domains"} <= set(results["metrics"])
    run = compare.load_run(str(tmp_path), "acc/test_domains")
    numbers = compare.run_numbers(run, "acc/test_domains")
    assert numbers["flops"] > 0 and numbers["epochs"] == 4  # a ledger row per client and round
    assert run["cost"]["totals"]["epochs"]["trained"] == 2  # rounds
    assert list((tmp_path / "clients" / "c1").glob("local_r2.pth"))  # FedBN kept its norms


# -- client-side rules: FedBN, GradSamp client mode -------------------------------------------
def test_fedbn_client_keeps_its_own_norm_layers(tmp_path):
    from mmengine.registry import MODELS

    from dgsamp.federated.client import norm_state_keys, train_client

    cfg = fl_config(tmp_path, train_domains=("0", "15"), num_rounds=2, strategy="FedBN")
    fl = FLSettings.from_cfg(cfg)
    model = MODELS.build(cfg.model)
    norms = set(norm_state_keys(model))
    assert norms  # DigitsCNN's GroupNorms
    first = train_client(cfg, fl, 0, 1, model.state_dict(), str(tmp_path / "c0"),
                         keep_norm_local=True)
    zeros = {k: torch.zeros_like(v) for k, v in model.state_dict().items()}
    cfg.optim_wrapper.optimizer.lr = 0.0  # round 2 leaves the weights where they start
    second = train_client(cfg, fl, 0, 2, zeros, str(tmp_path / "c0"), keep_norm_local=True)
    for k, v in second.state.items():
        assert torch.equal(v, first.state[k] if k in norms else zeros[k]), k


def test_client_mode_gradsamp_skips_local_epochs(tmp_path):
    from mmengine.registry import MODELS

    from dgsamp.federated.client import train_client
    from dgsamp.federated.report import ledger_from_payload

    cfg = fl_config(tmp_path, local_epochs=4, gradsamp=dict(mode="client", every=4, warmup=2))
    out = train_client(cfg, FLSettings.from_cfg(cfg), 0, 1, MODELS.build(cfg.model).state_dict(),
                       str(tmp_path / "c0"))
    ledger = ledger_from_payload(out.cost)
    assert ledger.totals()["epochs"] == dict(trained=3, skipped=1)
    assert [r.kind for r in ledger.rows] == ["trained", "trained", "skipped", "trained"]
