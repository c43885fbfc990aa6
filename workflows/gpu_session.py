"""One accelerator session: paper-regime fine-tunes, the paper's recipe and the data-efficiency grid.

Runs every job of a session config (:mod:`emgp_md.reproduce.session_config`) as parallel worker
processes on one device, against a global wall deadline, then packs the run folders into
``--out-dir`` (at most 8 files of < 15 MiB) and prints a compact summary. Stages:

1. checks (torch, device, packed data, the authors' checkpoint): exit 2 with a message if any fails;
2. CUDA MPS (``nvidia-cuda-mps-control -d``) when the config asks for it and the binary exists;
3. every worker starts, runs a smoke test (a few training steps + one validation, timed) and
   waits; if a worker fails under MPS, all stop, MPS is shut down and they start again without;
   if one fails without MPS the session stops (exit 3) with the worker's error;
4. the grid step budgets are scaled (``grid_step_scale: auto``) from the measured step time, the
   same factor for every run, and the workers train until ``train_s`` after the start; every
   run then tests its best-validation weights on ``test_01`` and writes ``metrics.json``;
5. at ``hard_stop_s`` any worker still running is ended; the results are packed.

Resumable: run again with the same ``out`` and finished runs are skipped, cut ones resume.

Usage (from the repository root; pack the data first with ``workflows/pack_gpu_data.py``)::

    PYTHONPATH=$PWD python workflows/gpu_session.py workflows/configs/gpu_session.yaml --out-dir "$OUT"
    PYTHONPATH=$PWD python workflows/gpu_session.py workflows/configs/gpu_session_cpu_toy.yaml --out-dir /tmp/o
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
log = logging.getLogger("gpu_session")


# --------------------------------------------------------------------------- worker side
def report_parser(description: str, data_dir_help: str) -> argparse.ArgumentParser:
    """The options shared by the session's part-workflows (data_efficiency.py, paper_regime.py)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", nargs="?", help="session YAML (needed unless --report-only)")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--root", type=Path, help="session folder (default: the config's out)")
    parser.add_argument("--report-dir", type=Path, default=Path("docs"))
    parser.add_argument("--data-dir", type=Path, default=Path(".gpu_data"), help=data_dir_help)
    return parser


def session_root(parser: argparse.ArgumentParser, args: argparse.Namespace, overrides: dict[str, Any]) -> Path:
    """The session folder to report on: ``--root`` with ``--report-only``, else the folder of a session
    run now from ``args.config`` with ``overrides`` (exits with its code when it fails)."""
    root = args.root
    if not args.report_only:
        if not args.config:
            parser.error("a session config is needed unless --report-only")
        from emgp_md.reproduce.session_config import load_session

        rc = run_session(args.config, overrides, None)
        if rc != 0:
            sys.exit(rc)
        root = root or Path(load_session(args.config, overrides).out)
    if root is None:
        parser.error("--root is needed with --report-only")
    return root


def worker_main(cfg_path: str, worker: str, session_file: Path) -> int:
    """A worker: smoke test + timing, wait for the driver's go, then its jobs (``long:<k>`` or ``grid:<k>``)."""
    from emgp_md.reproduce.gpu_session import bench_step_time, long_jobs, run_grid_worker, run_job
    from emgp_md.reproduce.session_config import load_session

    session = json.loads(session_file.read_text())
    cfg = load_session(cfg_path, session["overrides"])
    out = Path(cfg.out)
    bench_path = out / "bench" / f"{worker.replace(':', '_')}.json"
    try:
        bench = bench_step_time(cfg, cfg.bench_molecule, cfg.bench_batch, cfg.bench_steps)
    except Exception as exc:
        bench_path.write_text(
            json.dumps({"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()})
        )
        raise
    bench_path.write_text(json.dumps(bench))
    go_path = out / f"go_{session['attempt']}.json"
    while not go_path.exists():
        if time.time() > session["hard_deadline"]:
            return 1
        time.sleep(0.2)
    go = json.loads(go_path.read_text())
    if go.get("abort"):
        return 1
    kind, k = worker.split(":")
    if kind == "long":
        run_job(cfg, long_jobs(cfg)[int(k)], session["train_deadline"])
    else:
        run_grid_worker(cfg, go["step_scale"], session["train_deadline"], out / "claims")
    return 0


# --------------------------------------------------------------------------- driver side
def _checks(cfg: Any) -> list[str]:
    """Problems that make the session pointless (empty list: go)."""
    from emgp_md.data.packed import pack_path

    problems = []
    try:
        import torch
    except (ImportError, OSError) as exc:  # pragma: no cover - depends on the machine
        return [f"torch does not import: {exc}"]
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        problems.append(f"config asks for {cfg.device} but torch {torch.__version__} sees no CUDA device")
    mols = (
        set(cfg.grid.molecules)
        | set(cfg.paper_regime.molecules)
        | set(cfg.paper_recipe.molecules)
        | {cfg.bench_molecule}
    )
    for mol in sorted(mols):
        if not pack_path(cfg.data_dir, mol).is_file():
            problems.append(
                f"missing {pack_path(cfg.data_dir, mol)}: run workflows/pack_gpu_data.py first and carry it"
            )
    if not Path(cfg.pretrained_path).is_file():
        problems.append(f"missing the authors' checkpoint {cfg.pretrained_path}")
    return problems


class Mps:
    """CUDA MPS control daemon with private pipe/log folders; every step may fail silently."""

    def __init__(self, root: Path) -> None:
        self.env = {"CUDA_MPS_PIPE_DIRECTORY": str(root / "pipe"), "CUDA_MPS_LOG_DIRECTORY": str(root / "log")}
        self.on = False

    def start(self) -> bool:
        exe = shutil.which("nvidia-cuda-mps-control")
        if exe is None:
            log.info("MPS: nvidia-cuda-mps-control not found; workers time-share the GPU")
            return False
        for d in self.env.values():
            Path(d).mkdir(parents=True, exist_ok=True)
        try:
            rc = subprocess.run(
                [exe, "-d"], check=False, env={**os.environ, **self.env}, timeout=10, capture_output=True
            ).returncode
        except (OSError, subprocess.SubprocessError) as exc:
            log.info("MPS: could not start (%s)", exc)
            return False
        self.on = rc == 0
        log.info("MPS: %s", "started" if self.on else f"start failed (exit {rc})")
        return self.on

    def stop(self) -> None:
        if not self.on:
            return
        try:
            subprocess.run(
                ["nvidia-cuda-mps-control"], check=False, input=b"quit\n", env={**os.environ, **self.env}, timeout=10
            )
        except (OSError, subprocess.SubprocessError) as exc:
            log.warning("MPS: quit failed (%s)", exc)
        self.on = False


def _spawn(cfg_path: str, workers: list[str], session_file: Path, logs: Path, env: dict[str, str]) -> dict[str, Any]:
    logs.mkdir(parents=True, exist_ok=True)
    procs = {}
    for w in workers:
        with open(logs / f"worker_{w.replace(':', '_')}.log", "a") as fh:  # the child keeps its own copy
            procs[w] = subprocess.Popen(
                [sys.executable, __file__, cfg_path, "--worker", w, "--session-file", str(session_file)],
                stdout=fh,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=str(REPO),
            )
    return procs


def _end(procs: dict[str, Any], grace_s: float = 5.0) -> None:
    """Terminate the worker processes this driver started (by their own pids), then kill the stragglers."""
    for p in procs.values():
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    t_end = time.time() + grace_s
    for p in procs.values():
        try:
            p.wait(timeout=max(0.1, t_end - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _wait_for_bench(procs: dict[str, Any], bench_dir: Path, timeout_s: float) -> tuple[list[dict], list[str]]:
    """Bench results of every worker, and the workers that failed or timed out."""
    t_end = time.time() + timeout_s
    while time.time() < t_end:
        names = {w: bench_dir / f"{w.replace(':', '_')}.json" for w in procs}
        failed = [
            w
            for w, p in procs.items()
            if p.poll() not in (None, 0) or (names[w].exists() and "error" in json.loads(names[w].read_text() or "{}"))
        ]
        if failed:
            return [], failed
        if all(n.exists() for n in names.values()):
            return [json.loads(n.read_text()) for n in names.values()], []
        time.sleep(0.5)
    missing = [w for w in procs if not (bench_dir / f"{w.replace(':', '_')}.json").exists()]
    return [], missing or ["timeout"]


def _first_error(logs: Path, bench_dir: Path, failed: list[str]) -> str:
    for w in failed:
        b = bench_dir / f"{w.replace(':', '_')}.json"
        if b.exists():
            data = json.loads(b.read_text() or "{}")
            if "traceback" in data:
                return data["traceback"]
        lf = logs / f"worker_{w.replace(':', '_')}.log"
        if lf.exists():
            return lf.read_text()[-3000:]
    return "no worker log"


def run_session(cfg_path: str, overrides: dict[str, Any], out_dir: Path | None) -> int:
    """The driver (module docstring); returns the exit status."""
    from emgp_md.reproduce.gpu_session import auto_step_scale, grid_cells, long_jobs
    from emgp_md.reproduce.session_config import load_session
    from emgp_md.reproduce.session_results import pack_results, summary_text, write_summary

    t0 = time.time()
    cfg = load_session(cfg_path, overrides)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    problems = _checks(cfg)
    if problems:
        msg = "SESSION NOT STARTED:\n  " + "\n  ".join(problems)
        print(msg, flush=True)
        write_summary(out, out_dir, msg)
        return 2
    logs, bench_dir = out / "logs", out / "bench"
    shutil.rmtree(out / "claims", ignore_errors=True)
    shutil.rmtree(bench_dir, ignore_errors=True)
    bench_dir.mkdir(parents=True)
    workers = [f"long:{k}" for k in range(len(long_jobs(cfg)))]
    workers += [f"grid:{k}" for k in range(cfg.grid.workers if cfg.grid.molecules else 0)]
    session = {
        "start": t0,
        "train_deadline": t0 + cfg.train_s,
        "hard_deadline": t0 + cfg.hard_stop_s,
        "overrides": overrides,
        "attempt": 0,
        "config": cfg_path,
    }
    session_file = out / "session.json"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "OMP_NUM_THREADS": str(cfg.threads),
        "MKL_NUM_THREADS": str(cfg.threads),
    }
    mps = Mps(Path("/tmp") / f"emgp_mps_{os.getpid()}")
    use_mps = cfg.mps and cfg.device.startswith("cuda") and mps.start()
    benches: list[dict] = []
    procs: dict[str, Any] = {}
    try:
        for attempt, with_mps in enumerate([use_mps, False] if use_mps else [False]):
            session["attempt"], session["mps"] = attempt, with_mps
            session_file.write_text(json.dumps(session, indent=2))
            run_env = {**env, **(mps.env if with_mps else {})}
            procs = _spawn(cfg_path, workers, session_file, logs, run_env)
            benches, failed = _wait_for_bench(procs, bench_dir, 60.0 if with_mps else 90.0)
            if not failed:
                break
            err = _first_error(logs, bench_dir, failed)
            _end(procs)
            shutil.rmtree(bench_dir, ignore_errors=True)
            bench_dir.mkdir(parents=True)
            if with_mps:
                log.warning(
                    "smoke test failed under MPS (%s); stopping MPS and trying without:\n%s", failed, err[-1500:]
                )
                mps.stop()
                continue
            msg = f"SMOKE TEST FAILED (workers {failed}); session stopped. Error:\n{err}"
            print(msg, flush=True)
            write_summary(out, out_dir, msg)
            return 3
        step_s = sorted(b["step_s"] for b in benches)[len(benches) // 2]
        train_left = session["train_deadline"] - time.time()
        scale = (
            auto_step_scale(cfg, step_s, train_left) if cfg.grid_step_scale == "auto" else float(cfg.grid_step_scale)
        )
        steps = {j.n_train: j.max_steps for cell in grid_cells(cfg, scale) for j in cell}
        go = {
            "step_scale": scale,
            "median_step_s": step_s,
            "mps": session["mps"],
            "grid_steps": steps,
            "bench": benches,
            "smoke_done_s": time.time() - t0,
            "train_left_s": train_left,
        }
        (out / f"go_{session['attempt']}.json").write_text(json.dumps(go, indent=2))
        print(
            f"smoke test passed on {benches[0]['device']} in {time.time() - t0:.0f} s; MPS {session['mps']}; "
            f"median step {1000 * step_s:.1f} ms with {len(workers)} workers; grid step scale {scale:.2f} "
            f"-> steps per N {steps}; training for {train_left:.0f} s",
            flush=True,
        )
        _monitor(procs, out, session["hard_deadline"])
    finally:
        _end(procs)
        mps.stop()
    text = summary_text(out, time.time() - t0)
    print(text, flush=True)
    write_summary(out, out_dir, text)
    if out_dir is not None:
        for path in pack_results(out, out_dir):
            print(f"packed {path} ({path.stat().st_size / 2**20:.1f} MiB)", flush=True)
    return 0


def _monitor(procs: dict[str, Any], out: Path, hard_deadline: float) -> None:
    last = 0.0
    while any(p.poll() is None for p in procs.values()) and time.time() < hard_deadline:
        if time.time() - last > 30:
            n = sum(1 for _ in out.glob("**/metrics.json"))
            running = sum(p.poll() is None for p in procs.values())
            print(f"[{time.strftime('%H:%M:%S')}] {n} runs with metrics; {running} workers running", flush=True)
            last = time.time()
        time.sleep(1.0)
    if any(p.poll() is None for p in procs.values()):
        log.warning("hard stop: ending the workers still running")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="session YAML (workflows/configs/gpu_session.yaml)")
    parser.add_argument("--out-dir", type=Path, help="where the packed results go (the device's $OUT)")
    parser.add_argument("--train-s", type=float, help="seconds of the session before training stops")
    parser.add_argument("--hard-stop-s", type=float, help="seconds of the session before workers are ended")
    parser.add_argument("--no-mps", action="store_true", help="do not try CUDA MPS")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--session-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.worker:
        return worker_main(args.config, args.worker, args.session_file)
    overrides: dict[str, Any] = {}
    if args.train_s is not None:
        overrides["train_s"] = args.train_s
    if args.hard_stop_s is not None:
        overrides["hard_stop_s"] = args.hard_stop_s
    if args.no_mps:
        overrides["mps"] = False
    return run_session(args.config, overrides, args.out_dir)


if __name__ == "__main__":
    sys.exit(main())
