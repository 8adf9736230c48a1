"""``dexndm pipeline from_scratch=true``: make the reference checkpoints instead of loading them.

    oracle            PPO oracle on the task (privileged observation; Sec. 3.1)
    oracle_rollouts   its successful (full-length) episodes in sim (Appendix C)
    generalist        behaviour cloning on them (Sec. 3.2)
    sim_chaos_box     Chaos Box replay of those rollouts in the SOURCE domain (pre-training data)
    pretrain_jointwise / pretrain_wholehand   dynamics pre-trained on sim data (Sec. 3.3)

Sizes come from ``cfg.scratch``; the defaults are tiny (minutes), ``+preset=paper_scale``
sets real ones.
"""

from __future__ import annotations

from pathlib import Path

from dexndm.pipeline.cache import Stage


def scratch_stages(cfg: dict) -> list[Stage]:
    task, s, seed = cfg["task"], cfg["scratch"], int(cfg["seed"])

    def oracle(d: Path, i: dict) -> dict:
        from dexndm.rl.ppo import train

        run = train({"env": {**dict(cfg.get("env") or {}), "object_set": task["object_set"], "wrist": task["wrist"], "axes": task["axes"],
                             "num_envs": int(s["oracle_envs"]), "domain": cfg["source_domain"], "seed": seed,
                             "episode_steps": int(task["episode_steps"])},
                     "ppo": {}, "out_dir": str(d), "total_frames": int(s["oracle_frames"]), "seed": seed,
                     "progress": False, "tensorboard": False, "print_every": 20, "device": cfg.get("device", "cpu")})
        return {"checkpoint": run["checkpoint"], "frames": run["frames"]}

    def oracle_rollouts(d: Path, i: dict) -> dict:
        from dexndm.rl.rollout import rollout_oracle

        report = rollout_oracle(i["oracle"], out_path=d / "oracle_rollouts.h5", num_envs=min(64, int(s["rollout_episodes"])),
                                episodes=int(s["rollout_episodes"]), seed=seed)
        if not report.get("total"):
            raise RuntimeError(f"the oracle kept no full-length episode out of {report['attempted']}; train it longer "
                               "(scratch.oracle_frames) before behaviour cloning")
        return {"out": str(d / "oracle_rollouts.h5"), "kept": report["kept"], "attempted": report["attempted"]}

    def generalist(d: Path, i: dict) -> dict:
        from dexndm.pipeline.training import quote, train_experiment

        return train_experiment("generalist", d, [f"sim_data={quote(i['data'])}", f"seed={seed}",
                                                  f"trainer.max_epochs={s['generalist_epochs']}",
                                                  "~callbacks.progress", "+trainer.enable_progress_bar=false"])

    def sim_chaos_box(d: Path, i: dict) -> dict:
        from dexndm.collect.strategies import collect

        c = cfg["chaos_box"]
        return collect("chaos_box", out=d / "sim_chaos_box.h5", episodes=int(s["pretrain_episodes"]),
                       num_envs=int(c["num_envs"]), domain=cfg["source_domain"], source_file=i["source"],
                       wrist=task["wrist"], episode_steps=int(task["episode_steps"]), noise_prob=float(c["noise_prob"]),
                       noise_std=float(c["noise_std"]), seed=seed, num_balls=int(c["balls"]))

    def pretrain(variant: str):
        def fn(d: Path, i: dict) -> dict:
            from dexndm.pipeline.training import quote, train_experiment

            return train_experiment(f"{variant}_pretrain", d, [f"sim_data={quote(i['data'])}", f"seed={seed}",
                                                                f"trainer.max_epochs={s['pretrain_epochs']}",
                                                                "~callbacks.progress",
                                                                "+trainer.enable_progress_bar=false"])
        return fn

    stages = [
        Stage("oracle", oracle, lambda r: {"task": task, "frames": s["oracle_frames"], "envs": s["oracle_envs"],
                                            "domain": cfg["source_domain"]}, "train a PPO oracle"),
        Stage("oracle_rollouts", oracle_rollouts, lambda r: {"oracle": r["oracle"]["checkpoint"],
                                                              "episodes": s["rollout_episodes"]},
              "roll out the oracle, keep full-length episodes"),
        Stage("generalist", generalist, lambda r: {"data": r["oracle_rollouts"]["out"],
                                                    "epochs": s["generalist_epochs"]},
              "behaviour-clone the generalist"),
        Stage("sim_chaos_box", sim_chaos_box, lambda r: {"source": r["oracle_rollouts"]["out"],
                                                          "episodes": s["pretrain_episodes"],
                                                          "domain": cfg["source_domain"]},
              "Chaos Box data in the source domain (pre-training)"),
    ]
    for variant in ("jointwise", "wholehand"):
        stages.append(Stage(f"pretrain_{variant}", pretrain(variant),
                            lambda r: {"data": r["sim_chaos_box"]["out"], "epochs": s["pretrain_epochs"]},
                            f"pre-train the {variant} dynamics on sim data"))
    return stages
