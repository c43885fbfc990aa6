"""Molecular dynamics through ASE drivers: thin wrappers with units in the parameter names."""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms, units
from ase.constraints import FixCom
from ase.io.trajectory import Trajectory
from ase.md.langevin import Langevin
from ase.md.md import MolecularDynamics
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary, ZeroRotation
from ase.md.verlet import VelocityVerlet

log = logging.getLogger(__name__)
ENSEMBLES = ("langevin", "nve")
LOG_FIELDS = ["step", "time_ps", "epot_eV", "ekin_eV", "etot_eV", "temperature_K"]


@dataclass
class MDResult:
    """Outcome of :func:`run_md`.

    Attributes
    ----------
    atoms : Atoms
        Final structure (with velocities).
    trajectory : Path
        ASE trajectory file.
    log_csv : Path
        Per-frame energies (eV) and temperature (K).
    steps : int
        Steps run (fewer than asked when ``stopped_by`` is set).
    last_frame_step : int
        Step of the last frame written to the trajectory and the log (-1: none).
    stopped_by : BaseException or None
        The exception (one of ``run_md``'s ``stop_on``) that ended the run early, or None.
    """

    atoms: Atoms
    trajectory: Path
    log_csv: Path
    steps: int
    last_frame_step: int = -1
    stopped_by: BaseException | None = None


def init_velocities(atoms: Atoms, temperature_K: float, seed: int) -> None:
    """Maxwell–Boltzmann velocities at ``temperature_K``, no net momentum or rotation, seeded."""
    try:  # ASE >= 3.29
        from ase.md.velocitydistribution import thermalize_momenta
    except ImportError:  # pragma: no cover - older ASE
        thermalize_momenta = MaxwellBoltzmannDistribution
    thermalize_momenta(atoms, temperature_K=temperature_K, rng=np.random.default_rng(seed))
    Stationary(atoms)
    ZeroRotation(atoms)


def make_dynamics(
    atoms: Atoms,
    ensemble: str,
    timestep_fs: float,
    temperature_K: float,
    friction_per_fs: float,
    seed: int,
) -> MolecularDynamics:
    """ASE integrator: ``"nve"`` (velocity Verlet) or ``"langevin"``."""
    if ensemble == "nve":
        return VelocityVerlet(atoms, timestep=timestep_fs * units.fs)
    if ensemble == "langevin":
        if not any(isinstance(c, FixCom) for c in atoms.constraints):
            atoms.set_constraint([*atoms.constraints, FixCom()])  # ASE's recommended replacement for fixcm
        return Langevin(
            atoms,
            timestep=timestep_fs * units.fs,
            temperature_K=temperature_K,
            friction=friction_per_fs / units.fs,
            rng=np.random.default_rng(seed + 1),
            fixcm=False,
        )
    raise ValueError(f"unknown ensemble {ensemble!r}; use one of {list(ENSEMBLES)}")


def run_md(
    atoms: Atoms,
    out_prefix: str | Path,
    ensemble: str = "langevin",
    temperature_K: float = 300.0,
    timestep_fs: float = 0.5,
    steps: int = 1000,
    friction_per_fs: float = 0.01,
    seed: int = 0,
    interval: int = 10,
    progress: bool = True,
    stop_on: tuple[type[BaseException], ...] = (),
) -> MDResult:
    """Run MD on ``atoms`` (calculator attached); write ``<prefix>.traj``, ``<prefix>.csv`` (energies in
    eV, temperature in K per frame) and ``<prefix>.json`` (the run settings).

    Velocities are drawn at ``temperature_K`` unless the atoms already carry momenta.

    Whatever ends the run, the trajectory and the log are closed holding every frame written so far.
    An exception of a type in ``stop_on`` (e.g. ``KeyboardInterrupt``,
    :class:`~emgp_md.errors.BondChangeError`) ends the run early without being raised: the result
    then has ``stopped_by`` set, ``steps`` the steps completed and ``atoms`` the geometry reached.
    Any other exception propagates (after the files are closed).
    """
    from tqdm.auto import tqdm

    if atoms.calc is None:
        raise ValueError("attach a calculator first, e.g. atoms.calc = EMGPCalculator()")
    if steps < 0 or timestep_fs <= 0 or interval < 1:
        raise ValueError(f"need steps >= 0, timestep_fs > 0, interval >= 1 (got {steps}, {timestep_fs}, {interval})")
    prefix = Path(out_prefix)
    traj_path, csv_path = prefix.with_suffix(".traj"), prefix.with_suffix(".csv")
    try:
        atoms.get_potential_energy()  # the structure is checked (and refused) before anything is drawn or written
    except stop_on as exc:
        log.warning("MD stopped before its first step by %s; nothing was written", type(exc).__name__)
        return MDResult(
            atoms=atoms, trajectory=traj_path, log_csv=csv_path, steps=0, last_frame_step=-1, stopped_by=exc
        )
    prefix.parent.mkdir(parents=True, exist_ok=True)
    if not atoms.get_momenta().any():
        init_velocities(atoms, temperature_K, seed)
    constraints = list(atoms.constraints)
    dyn = make_dynamics(atoms, ensemble, timestep_fs, temperature_K, friction_per_fs, seed)
    settings = {
        "ensemble": ensemble,
        "temperature_K": temperature_K,
        "timestep_fs": timestep_fs,
        "steps": steps,
        "friction_per_fs": friction_per_fs if ensemble == "langevin" else None,
        "seed": seed,
        "interval": interval,
        "n_atoms": len(atoms),
        "formula": atoms.get_chemical_formula(),
    }
    prefix.with_suffix(".json").write_text(json.dumps(settings, indent=2))
    traj = Trajectory(str(traj_path), "w", atoms)
    bar = tqdm(total=steps, desc=f"MD {ensemble}", unit="step", disable=not progress)
    last_frame = [-1]
    stopped_by: BaseException | None = None
    try:
        with csv_path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=LOG_FIELDS)
            writer.writeheader()

            def record() -> None:
                epot, ekin = atoms.get_potential_energy(), atoms.get_kinetic_energy()
                traj.write(atoms)
                writer.writerow(
                    {
                        "step": dyn.nsteps,
                        "time_ps": dyn.nsteps * timestep_fs / 1000.0,
                        "epot_eV": epot,
                        "ekin_eV": ekin,
                        "etot_eV": epot + ekin,
                        "temperature_K": atoms.get_temperature(),
                    }
                )
                fh.flush()
                last_frame[0] = dyn.nsteps
                bar.update(dyn.nsteps - bar.n)

            dyn.attach(record, interval=interval)
            try:
                dyn.run(steps)
            except stop_on as exc:
                stopped_by = exc
    finally:
        traj.close()
        bar.close()
        atoms.set_constraint(constraints)  # remove the FixCom that Langevin added
    if stopped_by is not None:
        log.warning(
            "MD stopped after %d of %d steps by %s; trajectory %s and log %s hold the frames up to step %d",
            dyn.nsteps,
            steps,
            type(stopped_by).__name__,
            traj_path,
            csv_path,
            last_frame[0],
        )
    else:
        log.info("MD done: %d steps, trajectory %s, log %s", steps, traj_path, csv_path)
    return MDResult(
        atoms=atoms,
        trajectory=traj_path,
        log_csv=csv_path,
        steps=dyn.nsteps,
        last_frame_step=last_frame[0],
        stopped_by=stopped_by,
    )


def energy_drift_meV_per_atom_ps(time_ps: np.ndarray, etot_eV: np.ndarray, n_atoms: int) -> float:
    """Slope of a straight-line fit to the total energy, in meV/atom/ps."""
    slope_eV_per_ps = np.polyfit(np.asarray(time_ps), np.asarray(etot_eV), 1)[0]
    return float(slope_eV_per_ps * 1000.0 / n_atoms)
