"""The stages of ``dexndm pipeline`` (DexNDM Sec. 3.3 and 4, Appendix C), in order:

    sim_rollouts   the generalist rotating objects in the source domain (successful episodes)
    chaos_box      open-loop replay of those targets in the target domain, inside the Chaos Box
    finetune_jointwise / finetune_wholehand   sim-pretrained dynamics fine-tuned on the Chaos Box data
    target_rollouts  (``residual.states=target`` only) the generalist in the target domain, every episode
    proxy_data, proxy_reference_jointwise / _wholehand   (``residual.reference=proxy`` only) sim steps from the
                   states of simulated proxy hands, and the sim-pretrained dynamics fine-tuned on them: the
                   reference the residual tracks (``dexndm.collect.sim_reference``)
    residual_jointwise / residual_wholehand   residual policies through the frozen fine-tuned models
    evaluate       direct transfer, DexNDM (joint-wise) and the whole-hand variant in the target domain,
                   and the base policy in the source domain (the reference for what the gap costs)
    video          direct transfer vs DexNDM on one object, side by side
    report         report.json, markdown/CSV tables, plot

With ``from_scratch`` the released checkpoints are replaced by stages that make them:
``oracle`` -> ``oracle_rollouts`` -> ``generalist`` and ``sim_chaos_box`` ->
``pretrain_jointwise`` / ``pretrain_wholehand``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dexndm.files import file_sha256
from dexndm.pipeline.cache import Stage

METHODS = ("direct", "dexndm", "wholehand")
#: What ``residual.states`` accepts: the states the residual is trained on (see ``_residual_stage``).
RESIDUAL_STATES = ("sim", "target")


#: Options added after pipeline runs were cached, at the values that mean "as before the option existed": left out
#: of the stages' cache inputs, so that those caches stay valid (empty and zero count as these values).
LATER_OPTION_DEFAULTS: dict[str, dict[str, Any]] = {
    "finetune": {"extra_data": [], "fraction": 1.0},
    "residual": {"horizon": 1, "reference": None, "mean_weight": 0, "states": "sim", "target_episodes": 480,
                 "proxy": {"domains": ["actuator_gap", "paper_gains"], "rounds": 3, "num_envs": 32, "max_epochs": 10,
                           "measured": True}},
    "evaluate": {"ceiling": None},
}


def _cache_inputs(cfg: dict, section: str) -> dict:
    """``cfg[section]`` without the later options that sit at their ``LATER_OPTION_DEFAULTS``."""
    later = LATER_OPTION_DEFAULTS.get(section, {})
    return {k: v for k, v in cfg[section].items() if k not in later or (v or later[k]) != later[k]}


def _need(path: str, what: str, fix: str) -> str:
    if not Path(path).is_file():
        raise FileNotFoundError(f"{what} {path!r} does not exist; {fix}")
    return str(path)


def build_stages(cfg: dict) -> list[Stage]:
    """The ordered stages for a resolved pipeline config (plain dict)."""
    task, seed = cfg["task"], int(cfg["seed"])
    ck = cfg["checkpoints"]
    stages: list[Stage] = []

    if cfg.get("from_scratch"):
        stages += _scratch_stages(cfg)
        generalist = lambda r: r["generalist"]["checkpoint"]  # noqa: E731
        pretrained = {v: (lambda r, v=v: r[f"pretrain_{v}"]["checkpoint"]) for v in ("jointwise", "wholehand")}
    else:
        fix = "train it (`dexndm pipeline from_scratch=true`) or point checkpoints.* at your own"
        generalist = lambda r: _need(ck["generalist"], "generalist checkpoint", fix)  # noqa: E731
        pretrained = {v: (lambda r, v=v: _need(ck[v], f"sim-pretrained {v} dynamics checkpoint", fix))
                      for v in ("jointwise", "wholehand")}

    def sim_rollouts(d: Path, i: dict) -> dict:
        from dexndm.pipeline.report import command_offset
        from dexndm.pipeline.steps import rollout_policy

        out = rollout_policy(d / "sim_rollouts.h5", generalist=i["generalist"], domain=cfg["source_domain"],
                             task=task, episodes=cfg["sim_rollouts"]["episodes"],
                             num_envs=cfg["sim_rollouts"]["num_envs"], seed=seed, env=cfg.get("env"))
        return {**out, "command_offset_rad": command_offset(out["out"])}

    stages.append(Stage("sim_rollouts", sim_rollouts, lambda r: {
        "generalist": generalist(r), "generalist_sha256": file_sha256(generalist(r)),
        "domain": cfg["source_domain"], "task": task, "env": cfg.get("env"), **cfg["sim_rollouts"]},
        "roll out the generalist in the source domain"))

    def chaos_box(d: Path, i: dict) -> dict:
        from dexndm.collect.strategies import collect

        c = cfg["chaos_box"]
        return collect("chaos_box", out=d / "chaos_box.h5", episodes=int(c["episodes"]), num_envs=int(c["num_envs"]),
                       domain=cfg["domain"], source_file=i["source"], wrist=task["wrist"],
                       episode_steps=int(task["episode_steps"]), noise_prob=float(c["noise_prob"]),
                       noise_std=float(c["noise_std"]), seed=seed, num_balls=int(c["balls"]))

    stages.append(Stage("chaos_box", chaos_box, lambda r: {
        "source": r["sim_rollouts"]["out"], "domain": _domain_key(cfg["domain"]), **cfg["chaos_box"]},
        "collect Chaos Box data in the target domain"))

    states = cfg["residual"].get("states", "sim")
    if states not in RESIDUAL_STATES:
        raise ValueError(f"residual.states must be one of {RESIDUAL_STATES} (the states the residual is trained on), "
                         f"got {states!r}")
    if states == "target":
        def target_rollouts(d: Path, i: dict) -> dict:
            from dexndm.collect.strategies import collect

            return collect("task_aware", out=d / "target_rollouts.h5", episodes=int(cfg["residual"]["target_episodes"]),
                           num_envs=int(cfg["sim_rollouts"]["num_envs"]), domain=cfg["domain"], wrist=task["wrist"],
                           episode_steps=int(task["episode_steps"]), seed=seed, policy=f"generalist:{i['generalist']}",
                           object_set=task["object_set"], axes=task["axes"], env=dict(cfg.get("env") or {}),
                           keep_failed=True, progress=False)

        stages.append(Stage("target_rollouts", target_rollouts, lambda r: {
            "generalist": generalist(r), "generalist_sha256": file_sha256(generalist(r)),
            "domain": _domain_key(cfg["domain"]), "task": task, "env": cfg.get("env"),
            "episodes": int(cfg["residual"]["target_episodes"]), "num_envs": int(cfg["sim_rollouts"]["num_envs"]),
            "sampling": "rounds"},          # (earlier runs restarted each env at its drop: mostly failing grasps)
            "roll out the generalist in the target domain (the residual's training states)"))

    if _reference_kind(cfg) == "proxy":
        stages += _proxy_stages(cfg, generalist, pretrained)
    for variant in ("jointwise", "wholehand"):
        stages.append(_finetune_stage(cfg, variant, pretrained[variant]))
        stages.append(_residual_stage(cfg, variant, pretrained[variant]))

    def evaluate(d: Path, i: dict) -> dict:
        from dexndm.pipeline.steps import evaluate_methods

        return evaluate_methods(d, generalist=i["generalist"], residuals=i["residuals"], domain=cfg["domain"],
                                task=task, seeds=list(cfg["evaluate"]["seeds"]),
                                episodes=int(cfg["evaluate"]["episodes"]), num_envs=int(cfg["evaluate"]["num_envs"]),
                                env=cfg.get("env"), source_domain=cfg["source_domain"], ceiling=ceiling)

    ceiling = cfg["evaluate"].get("ceiling")
    if ceiling is not None:
        from dexndm.eval.ideal import check_domains

        check_domains(cfg["domain"], cfg["source_domain"], f"evaluate.ceiling={ceiling}")   # before any stage runs
    stages.append(Stage("evaluate", evaluate, lambda r: {
        "generalist": generalist(r), "domain": _domain_key(cfg["domain"]), "task": task, "env": cfg.get("env"),
        "source_domain": _domain_key(cfg["source_domain"]),
        **_cache_inputs(cfg, "evaluate"),
        "residuals": {"dexndm": r["residual_jointwise"]["checkpoint"],
                      "wholehand": r["residual_wholehand"]["checkpoint"]}},
        "evaluate direct transfer, DexNDM and whole-hand in the target domain, the base policy in the source domain"))

    if cfg["video"]["enabled"]:
        def video(d: Path, i: dict) -> dict:
            from dexndm.pipeline.video import side_by_side

            direct = f"generalist:{i['generalist']}"
            ours = f"generalist:{i['generalist']}+residual:{i['residual']}"
            env_cfg = {**dict(cfg.get("env") or {}), **_env_task(task), "domain": cfg["domain"]}
            return side_by_side(direct, ours, env_cfg, d / "direct_vs_dexndm.gif", steps=int(cfg["video"]["steps"]),
                                seed=seed)

        stages.append(Stage("video", video, lambda r: {
            "generalist": generalist(r), "residual": r["residual_jointwise"]["checkpoint"],
            "domain": _domain_key(cfg["domain"]), **cfg["video"]}, "render direct transfer vs DexNDM"))
    return stages


def _finetune_stage(cfg: dict, variant: str, pretrained) -> Stage:
    extra = [_need(str(p), "finetune.extra_data file", "give existing HDF5 trajectory files collected in the target "
                   "domain (e.g. `dexndm collect task_aware --domain ...`), or extra_data=[]")
             for p in cfg["finetune"].get("extra_data") or []]      # checked when the stages are built
    f = cfg["finetune"]

    def fn(d: Path, i: dict) -> dict:
        return _finetune(cfg, variant, d, i["pretrained"], [i["data"], *extra], f["max_epochs"], f.get("fraction", 1.0))

    return Stage(f"finetune_{variant}", fn, lambda r: {
        "data": r["chaos_box"]["out"], "pretrained": pretrained(r), "pretrained_sha256": file_sha256(pretrained(r)),
        **_cache_inputs(cfg, "finetune"),
        **({"extra_sha256": [file_sha256(p) for p in extra]} if extra else {})},
        f"fine-tune the sim-pretrained {variant} dynamics on the Chaos Box data"
        + (f" and {len(extra)} more target-domain file(s)" if extra else ""))


def _finetune(cfg: dict, variant: str, d: Path, pretrained: str, files: list[str], epochs: int,
              fraction: float = 1.0) -> dict:
    """``dexndm train experiment=<variant>_finetune`` of the pretrained architecture as it is on ``files`` (the first
    named ``real``, the others ``extra_k``), with the pipeline's batch size and learning rate."""
    from dexndm.pipeline.training import quote, train_experiment

    f = cfg["finetune"]
    net = _dynamics_meta(pretrained)["config"]
    named = [f"{{path:{quote(path)},name:{'real' if k == 0 else f'extra_{k - 1}'}}}" for k, path in enumerate(files)]
    return train_experiment(f"{variant}_finetune", d, [
        f"real_data={quote(files[0])}", f"data.files=[{','.join(named)}]",
        f"pretrained={quote(pretrained)}", f"seed={cfg['seed']}",
        f"model.hidden={net['hidden']}", f"model.depth={net['depth']}", f"data.window={net['window']}",
        f"model.delta={net['delta']}",
        f"trainer.max_epochs={epochs}", f"data.batch_size={f['batch_size']}", f"model.lr={f['lr']}",
        f"data.fraction={fraction}", "~callbacks.progress", "+trainer.enable_progress_bar=false"])


def _reference_kind(cfg: dict) -> str:
    """``none``, ``proxy`` or ``given`` (a {variant: checkpoint} map), after checking ``residual.reference``."""
    refs = cfg["residual"].get("reference")
    if refs is None:
        return "none"
    if refs == "proxy":
        if cfg["residual"].get("states", "sim") != "target":
            raise ValueError("residual.reference=proxy is a reference for residuals trained on the target hand's "
                             "states: add residual.states=target")
        return "proxy"
    if not hasattr(refs, "get") or set(refs) - {"jointwise", "wholehand"}:
        raise ValueError(f"residual.reference must be null, proxy, or map jointwise/wholehand to checkpoints, got "
                         f"{refs!r}; e.g. 'residual.reference={{jointwise:src_ft.ckpt}}'")
    return "given"


def _proxy_stages(cfg: dict, generalist, pretrained) -> list[Stage]:
    """``proxy_data`` (sim steps from the states of each ``residual.proxy.domains`` hand) and
    ``proxy_reference_<variant>`` (the sim-pretrained model fine-tuned on them)."""
    from dexndm.sim.domain import load_domain

    p = cfg["residual"]["proxy"]
    domains = [str(d) for d in p["domains"]]
    if not domains:
        raise ValueError("residual.proxy.domains is empty: give the simulated hands whose states the reference "
                         "learns from (presets or domain files), e.g. [actuator_gap,paper_gains]")
    for d in domains:                                          # before any stage runs
        if _domain_key(d) == _domain_key(cfg["domain"]):
            raise ValueError(f"residual.proxy.domains holds the target domain {d!r}: its sim-labelled states would "
                             "be privileged knowledge of the target hand; use other simulated hands")
        dom = load_domain(d)
        if dom.latency_control_steps or dom.latency_physics_steps or dom.backlash.any():
            raise ValueError(f"residual.proxy.domains: {d!r} has latency or backlash; the sim is stepped from a proxy "
                             "hand's full state under its command, which needs a hand that acts within the step "
                             "and has the sim's joints. Use domains without either (gains, masses, friction, ...)")
    task = cfg["task"]

    def proxy_data(d: Path, i: dict) -> dict:
        from dexndm.collect.sim_reference import collect_sim_reference

        out = [collect_sim_reference(out=d / f"proxy_{k}.h5", generalist=i["generalist"], domain=dom,
                                     source_domain=cfg["source_domain"], object_set=task["object_set"],
                                     axes=task["axes"], wrist=task["wrist"], episode_steps=int(task["episode_steps"]),
                                     rounds=int(p["rounds"]), num_envs=int(p["num_envs"]), window=i["window"],
                                     seed=2000 + 100 * int(cfg["seed"]), env=dict(cfg.get("env") or {}),
                                     measured=bool(p["measured"]))
               for k, dom in enumerate(domains)]
        return {"files": [o["out"] for o in out], "windows": {o["domain"]: o["windows"] for o in out}}

    def window(r) -> int:
        return max(int(_dynamics_meta(pretrained[v](r))["window"]) for v in ("jointwise", "wholehand"))

    stages = [Stage("proxy_data", proxy_data, lambda r: {
        "generalist": generalist(r), "generalist_sha256": file_sha256(generalist(r)), "task": task,
        "env": cfg.get("env"), "source_domain": _domain_key(cfg["source_domain"]),
        "domains": [_domain_key(d) for d in domains], "rounds": int(p["rounds"]), "num_envs": int(p["num_envs"]),
        "window": window(r), "seed": int(cfg["seed"]), "measured": bool(p["measured"])},
        f"sim steps from the states of {len(domains)} proxy hand(s): {', '.join(domains)}")]
    for variant in ("jointwise", "wholehand"):
        def fn(d: Path, i: dict, variant=variant) -> dict:
            return _finetune(cfg, variant, d, i["pretrained"], i["data"], int(p["max_epochs"]))

        stages.append(Stage(f"proxy_reference_{variant}", fn, lambda r, variant=variant: {
            "data": r["proxy_data"]["files"], "pretrained": pretrained[variant](r),
            "pretrained_sha256": file_sha256(pretrained[variant](r)), "max_epochs": int(p["max_epochs"]),
            "batch_size": cfg["finetune"]["batch_size"], "lr": cfg["finetune"]["lr"]},
            f"fine-tune the sim-pretrained {variant} dynamics on the proxy hands' sim steps (the reference)"))
    return stages


def _residual_stage(cfg: dict, variant: str, pretrained) -> Stage:
    """``residual.states=sim`` (the paper's): trained on the generalist's sim rollouts to track the sim's next
    state.  ``target``: trained on the generalist's own target-domain rollouts (``target_rollouts``) to reach,
    from each of those states, where the sim-pretrained model of the variant (or ``residual.reference``: given
    checkpoints, or ``proxy``, the ``proxy_reference_<variant>`` stage's model) says the sim hand would go; only the
    current command is corrected (``history_commands=recorded``, models/residual.py)."""
    on_target = cfg["residual"].get("states", "sim") == "target"
    kind = _reference_kind(cfg)
    ref = cfg["residual"]["reference"].get(variant) if kind == "given" else None
    if ref is not None:                                       # checked when the stages are built
        _need(str(ref), f"residual.reference.{variant} checkpoint", "give a dynamics checkpoint of this variant "
              "fine-tuned on source-domain data (models/residual.py, reference_ckpt), or residual.reference=null")

    def fn(d: Path, i: dict) -> dict:
        from dexndm.pipeline.training import quote, train_experiment

        from dexndm.models.residual import training_window

        r = cfg["residual"]
        horizon = int(r.get("horizon", 1))
        window = training_window(_dynamics_meta(i["dynamics"])["window"], r["history"], horizon)
        reference = str(ref) if ref is not None else i.get("proxy_reference", i.get("sim_model"))
        return {"horizon": horizon, **train_experiment("residual", d, [
            f"sim_data={quote(i['data'])}", f"dynamics_ckpt={quote(i['dynamics'])}", f"seed={cfg['seed']}", f"data.window={window}",
            f"model.history={r['history']}", f"model.horizon={horizon}",
            *([f"model.reference_ckpt={quote(str(reference))}"] if reference is not None else []),
            *(["model.history_commands=recorded"] if on_target else []),
            f"trainer.max_epochs={r['max_epochs']}", f"data.batch_size={r['batch_size']}",
            f"model.res_weight={r['res_weight']}", f"model.max_residual={r['max_residual']}",
            f"model.mean_weight={r.get('mean_weight', 0.0)}",
            "~callbacks.progress", "+trainer.enable_progress_bar=false"])}

    def inputs(r) -> dict:
        data = r["target_rollouts"]["out"] if on_target else r["sim_rollouts"]["out"]
        out = {"data": data, "dynamics": r[f"finetune_{variant}"]["checkpoint"], **_cache_inputs(cfg, "residual")}
        if ref is not None:
            out["reference_sha256"] = file_sha256(str(ref))
        elif kind == "proxy":
            out["proxy_reference"] = r[f"proxy_reference_{variant}"]["checkpoint"]
        elif on_target:                                  # the sim-pretrained model says where the sim would go
            out |= {"sim_model": pretrained(r), "sim_model_sha256": file_sha256(pretrained(r))}
        return out

    return Stage(f"residual_{variant}", fn, inputs,
                 f"train the residual through the fine-tuned {variant} dynamics"
                 + (" on the target-domain rollouts" if on_target else ""))


def _dynamics_meta(path: str) -> dict:
    from dexndm.models.lit_dynamics import load_dynamics

    return load_dynamics(path)[1]


def _scratch_stages(cfg: dict) -> list[Stage]:
    from dexndm.pipeline.scratch import scratch_stages

    return scratch_stages(cfg)


def _env_task(task: dict) -> dict[str, Any]:
    return {"object_set": task["object_set"], "wrist": task["wrist"], "axes": task["axes"],
            "episode_steps": int(task["episode_steps"])}


def _domain_key(domain: Any) -> Any:
    """A domain as cache input: a preset name, or a file path with its content hash."""
    p = Path(str(domain))
    if p.suffix in (".yaml", ".yml") and p.is_file():
        return {"path": str(p), "sha256": file_sha256(p)}
    return domain
