"""``dexndm train_oracle``: train one PPO oracle per object category (DexNDM Sec. 3.1, Appendix C).

Writes to the run directory: ``checkpoints/last.pt`` (every ``checkpoint_every``
iterations and at the end; data only, see ``dexndm.rl.checkpoint``), ``metrics.csv``
(one row per iteration) and ``tb/`` (TensorBoard).  Rerunning with the same
``hydra.run.dir`` resumes from ``checkpoints/last.pt`` and continues exactly.  SIGTERM or Ctrl-C
stops the run after the current iteration with a checkpoint there (a second one stops it at once).

    dexndm train_oracle task=cuboids env.wrist=palm_up env.axes=+z total_frames=5000000
"""

from __future__ import annotations

from omegaconf import DictConfig

from dexndm.apps import hydra_app


def run(cfg: DictConfig) -> dict:
    """Train (or resume) the oracle described by ``cfg``; returns the run summary."""
    from dexndm.rl.ppo import train

    return train(cfg)


def _run_and_print(cfg: DictConfig) -> None:
    summary = run(cfg)
    last = summary["last"]
    episode = (f"RotR {last['episode/rot_r']:.2f}, TTF {last['episode/ttf']:.2f}; "
               if "episode/rot_r" in last else "")
    lineage = (f" ({summary['lineage_frames']} with the runs it was warm-started from)"
               if summary["lineage_frames"] != summary["frames"] else "")
    print(f"[train_oracle] {summary['iterations']} iterations, {summary['frames']} frames{lineage} in "
          f"{summary['wall_s']:.0f} s; {episode}checkpoint: {summary['checkpoint']}")


main = hydra_app("train_oracle", _run_and_print)


if __name__ == "__main__":
    main()
