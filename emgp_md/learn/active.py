"""``emgp-md learn``: a model for a new molecule from few labels, by committee active learning.

1. Start structure (a file, or RDKit ETKDG + MMFF from SMILES); its elements must be known to the
   pretrained backbone.
2. GFN2-xTB MD at ``temperature_K`` draws a pool of geometries (and, with another seed, the test
   frames, labelled but never trained on).
3. Round 0 labels ``n_initial`` pool frames. Each round: fine-tune a committee from the pretrained
   backbone on all labels; run committee MD (the probe); label the ``n_per_round`` probe geometries
   where the members disagree most on the forces.
4. Stop when a probe run stays intact with the committee's disagreement below
   ``disagreement_eV_A`` **and** a ``stability_ps`` run of the model passes the bond criterion
   (``converged``); or when the label budget is spent (``budget_spent``: the model is written, but
   not called done).

Everything lands in ``out_dir``; a killed run continues with ``resume=True`` without relabelling or
retraining what is finished (labels are stored one by one, members and MD runs by their result files).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from emgp_md.atomic import atomic_write_json
from emgp_md.learn import rounds
from emgp_md.learn.settings import LearnConfig

log = logging.getLogger(__name__)


@dataclass
class LearnResult:
    """Outcome of :func:`learn`: ``status`` is ``"converged"`` or ``"budget_spent"``; ``model`` the model file."""

    status: str
    model: str
    n_labels: int
    rounds: list[dict[str, Any]]
    stability: dict[str, Any] | None
    test: dict[str, Any] | None
    level_of_theory: str
    wall_s: float
    labels_failed: int = 0
    committee: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def make_labeller(name: str) -> Any:
    """The built-in labeller ``"pyscf"`` (PBE/def2-SVP, density fitting) or ``"xtb"`` (GFN2-xTB)."""
    from emgp_md.learn.labelling import PySCFLabeller, XTBLabeller

    if name == "pyscf":
        return PySCFLabeller()
    if name == "xtb":
        return XTBLabeller()
    raise ValueError(f"unknown labeller {name!r}; use 'pyscf' or 'xtb'")


def check_elements(atoms: Atoms, pretrained: str) -> None:
    """Refuse elements the pretrained backbone never saw, listing them (a shipped backbone's index says)."""
    from ase.data import chemical_symbols

    from emgp_md.pretrained import available_backbones
    from emgp_md.training.transfer import unseen_elements

    unknown = unseen_elements(pretrained, set(atoms.numbers.tolist()))
    if unknown:
        names = ", ".join(f"{chemical_symbols[z]} (Z={z})" for z in unknown)
        have = ", ".join(chemical_symbols[z] for z in available_backbones()[pretrained]["elements"])
        raise ValueError(
            f"element(s) {names} are unknown to the pretrained backbone {pretrained!r}, which saw only {have}; "
            "its features for them were never trained. Use a backbone pretrained on them (--pretrained PATH)."
        )


def _frames_file(path: Path, make: Any) -> list[Atoms]:
    """Frames stored in ``path`` (extxyz), made by ``make()`` and written atomically the first time."""
    import ase.io

    from emgp_md.atomic import atomic_path

    if path.is_file():
        return ase.io.read(path, index=":")
    frames = make()
    with atomic_path(path) as tmp:
        ase.io.write(tmp, frames, format="extxyz")
    return frames


def _label(frames: list[Atoms], labeller: Any, store: Path, start: int, cfg: LearnConfig) -> Any:
    from emgp_md.learn.labelling import label_frames

    client = dask_client(cfg.dask_scheduler)
    try:
        return label_frames(frames, labeller, store, max_workers=cfg.workers, start_index=start, client=client)
    finally:
        if client is not None:
            client.close()


def dask_client(address: str | None) -> Any:
    """A ``dask.distributed`` client of the scheduler at ``address`` (None: no cluster, local labelling)."""
    if address is None:
        return None
    try:
        from dask.distributed import Client
    except ImportError:
        raise ImportError(
            f"labelling on the dask cluster {address!r} needs dask.distributed: pip install 'emgp-md[dask]'"
        ) from None
    return Client(address)


def learn(spec: str, out_dir: str | Path, cfg: LearnConfig | None = None, max_rounds: int = 12) -> LearnResult:
    """Active learning for the molecule ``spec`` (SMILES or structure file) into ``out_dir``; see the module doc.

    Rerunning with the same ``out_dir`` resumes: finished labels, members and MD runs are reused.
    """
    from emgp_md.learn.labelling import load_store
    from emgp_md.learn.sampling import sample_xtb_md, start_structure

    cfg = cfg or LearnConfig()
    out = Path(out_dir)
    clock = _Clock(out / "time.json")
    resumed = (out / "start.xyz").is_file()
    start = _frames_file(out / "start.xyz", list)[0] if resumed else start_structure(spec, seed=cfg.seed)
    check_elements(start, cfg.pretrained)  # refused input (a bad SMILES, unknown elements) leaves no folder
    out.mkdir(parents=True, exist_ok=True)
    _frames_file(out / "start.xyz", lambda: [start])
    labeller = make_labeller(cfg.labeller)
    atomic_write_json(out / "settings.json", {"spec": spec, **asdict(cfg)})

    def md(n: int, seed: int, stride: int) -> list[Atoms]:
        return sample_xtb_md(start, n, cfg.temperature_K, cfg.timestep_fs, stride_steps=stride, seed=seed)

    pool = _frames_file(out / "pool.xyz", lambda: md(cfg.n_pool, cfg.seed, 20))
    test = None
    if cfg.n_test:
        test_frames = _frames_file(out / "test_pool.xyz", lambda: md(cfg.n_test, cfg.seed + 7919, 40))
        _label(test_frames, labeller, out / "labels_test", 0, cfg)
        test = load_store(out / "labels_test").to_frames()
    train_store = out / "labels_train"
    picks = np.unique(np.linspace(0, len(pool) - 1, min(cfg.n_initial, cfg.max_labels)).round().astype(int))
    batch = _frames_file(out / "round_0" / "selected.xyz", lambda: [pool[i] for i in picks])
    records, stability, status = [], None, "budget_spent"
    n_asked = 0
    for r in range(max_rounds):
        _label(batch, labeller, train_store, n_asked, cfg)
        n_asked += len(batch)
        labels = load_store(train_store).to_frames(below=n_asked)  # a resumed round sees its own labels only
        round_dir = out / f"round_{r}"
        previous = out / f"round_{r - 1}" if r else None
        models, metrics = rounds.train_committee(cfg, labels, test, round_dir, previous)
        probe = rounds.probe(cfg, models, start, round_dir, seed=cfg.seed + r)
        records.append(rounds.round_record(r, len(labels), metrics, probe))
        clock.save()
        _summary_line(records[-1], cfg)
        agree = probe["intact"] and (probe["disagreement_p95_eV_A"] or np.inf) < cfg.disagreement_eV_A
        n_next = rounds.with_labels(cfg, n_asked, cfg.n_per_round)
        if agree or n_next == 0:
            stability = rounds.stability_run(cfg, models[0], start, round_dir, seed=cfg.seed + 100 + r)
            records[-1]["stability"] = stability
            if agree and stability["stable"]:
                status = "converged"
                break
            if n_next == 0:
                break
        next_dir = out / f"round_{r + 1}"
        batch = _frames_file(
            next_dir / "selected.xyz",
            lambda d=round_dir, n=n_next: rounds.select_frames(d, n, start.numbers.copy()),
        )
    else:
        log.warning("stopped after %d rounds without convergence", max_rounds)
    final = out / f"round_{len(records) - 1}"
    store = load_store(train_store)
    result = LearnResult(
        status=status,
        model=str(out / "model.pt"),
        n_labels=len(store.labelled),
        rounds=records,
        stability=stability,
        test=_test_metrics(final),
        level_of_theory=labeller.level_of_theory,
        wall_s=clock.save(),
        labels_failed=len(store.failed),
        committee=[str(final / f"member_{k}" / "model.pt") for k in range(cfg.committee)],
    )
    _write_model(final / "member_0" / "model.pt", out / "model.pt", spec, result)
    atomic_write_json(out / "learn.json", result.to_dict())
    log.info(
        "learn %s: %s with %d labels (%s) in %.0f s",
        spec,
        status,
        result.n_labels,
        result.level_of_theory,
        result.wall_s,
    )
    return result


class _Clock:
    """Wall time of a run over all its invocations (a resumed run adds to it), kept in ``path``;
    the time since the last save of a killed invocation is not counted."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.before = json.loads(path.read_text())["wall_s"] if path.is_file() else 0.0
        self.t0 = time.perf_counter()

    def save(self) -> float:
        total = self.before + time.perf_counter() - self.t0
        if self.path.parent.is_dir():
            atomic_write_json(self.path, {"wall_s": total})
        return total


def _test_metrics(round_dir: Path) -> dict[str, Any] | None:
    path = round_dir / "member_0" / "metrics.json"
    return json.loads(path.read_text()).get("test") if path.is_file() else None


def _summary_line(record: dict[str, Any], cfg: LearnConfig) -> None:
    probe = record["probe"] or {}
    log.info(
        "round %d: %d labels; test force MAE %s meV/Å; probe %s, force disagreement p95 %.3f eV/Å (threshold %.3f)",
        record["round"],
        record["n_labels"],
        "n/a" if record["test_force_mae_meV_A"] is None else f"{record['test_force_mae_meV_A']:.1f}",
        "intact" if probe.get("intact") else f"stopped at step {probe.get('steps')}",
        probe.get("disagreement_p95_eV_A") or float("nan"),
        cfg.disagreement_eV_A,
    )


def _write_model(member: Path, dest: Path, spec: str, result: LearnResult) -> None:
    """The model of ``member`` with the learning's provenance: input, level of theory, labels, rounds,
    test errors, stability and status."""
    from emgp_md.models.checkpoint import load_checkpoint, save_checkpoint

    model, meta = load_checkpoint(member)
    meta.setdefault("provenance", {})["learn"] = {
        "input": spec,
        "level_of_theory": result.level_of_theory,
        "labels": result.n_labels,
        "labels_failed": result.labels_failed,
        "rounds": len(result.rounds),
        "status": result.status,
        "stability": result.stability,
        "test": result.test,
        "committee": result.committee,
    }
    meta["name"] = f"learn:{spec}"
    save_checkpoint(dest, model, meta)
