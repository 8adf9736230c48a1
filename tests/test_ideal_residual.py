"""The ideal residual (``dexndm.eval.ideal``): DexNDM's one-step objective solved with the simulators themselves."""

from __future__ import annotations

import numpy as np
import pytest

from dexndm.eval import policies as P
from dexndm.eval import rotation as R
from dexndm.eval.ideal import IdealResidualPolicy
from dexndm.sim import make_env
from tests.test_eval_rotation import save_generalist

STEPS = 12


@pytest.fixture(scope="module")
def gen(tmp_path_factory):
    return str(save_generalist(tmp_path_factory.mktemp("ideal") / "gen.ckpt"))


@pytest.fixture(scope="module")
def weak_domain(tmp_path_factory):
    """Soft actuators without a lower current limit: a gap a command correction can undo."""
    path = tmp_path_factory.mktemp("ideal_domain") / "weak.yaml"
    path.write_text("name: weak_gains\nactuator:\n  kp_scale: 0.35\n  kd_scale: 0.5\n")
    return str(path)


def test_spec_parsing_and_refusals():
    spec = P.parse_policy("generalist:g.ckpt+ideal:0.1")
    assert (spec.kind, spec.checkpoint, spec.residual, spec.ideal, spec.ideal_source) == \
        ("generalist", "g.ckpt", None, 0.1, "nominal")
    assert P.parse_policy(str(spec)) == spec and spec.default_name() == "generalist+ideal"
    other = P.parse_policy("generalist:g.ckpt+ideal:0.05@paper_gains")
    assert other.ideal_source == "paper_gains" and P.parse_policy(str(other)) == other
    assert P.parse_policy({"kind": "generalist", "checkpoint": "g", "ideal": 0.1}) == P.PolicySpec("generalist", "g", ideal=0.1)
    for bad, words in (("oracle:o.pt+ideal:0.1", "generalist without a residual"),
                       ("generalist:g+residual:r+ideal:0.1", "with a residual"),
                       ("generalist:g+ideal:abc", "takes a bound"),
                       ("generalist:g+ideal:-0.1", ">= 0")):
        with pytest.raises(ValueError, match=words):
            P.parse_policy(bad)


def _env(tiny_env_cfg, domain, n=4):
    return make_env({**tiny_env_cfg, "episode_steps": STEPS}, num_envs=n, domain=domain)


def test_bound_zero_is_direct_transfer_and_a_bound_closes_the_gap(tiny_env_cfg, gen, weak_domain):
    """Bound 0: the state save/restore leaves every episode exactly as direct transfer runs it.  Bound 0.1:
    the target hand ends its steps much closer to where the sim hand would have."""
    env = _env(tiny_env_cfg, weak_domain)
    try:
        direct = R.run_episodes(P.load_policy(f"generalist:{gen}"), env, 4, seed=3)
        zero = IdealResidualPolicy(P.parse_policy(f"generalist:{gen}+ideal:0"))
        zero.check_env(env)
        same = R.run_episodes(zero, env, 4, seed=3)
        ideal = IdealResidualPolicy(P.parse_policy(f"generalist:{gen}+ideal:0.1"))
        ideal.check_env(env)
        R.run_episodes(ideal, env, 4, seed=3)
    finally:
        env.close()
        zero.close()
        ideal.close()
    for a, b in zip(direct, same):
        assert {k: a[k] for k in R.METRICS} == {k: b[k] for k in R.METRICS}
    z, i = zero.stats(), ideal.stats()
    assert z["one_step_gap_mrad"] > 1.0 and z["one_step_left_mrad"] == pytest.approx(z["one_step_gap_mrad"])
    assert i["one_step_left_mrad"] < 0.5 * i["one_step_gap_mrad"], i     # 17.4 -> 6.2 mrad when written


def test_source_twin_draws_the_same_episodes(tiny_env_cfg, gen, weak_domain):
    env = _env(tiny_env_cfg, weak_domain)
    policy = IdealResidualPolicy(P.parse_policy(f"generalist:{gen}+ideal:0.1"))
    try:
        policy.check_env(env)
        env.set_seed(11, static_seed=True)
        env.reset()
        twin = policy._sync(env)
        assert twin.domain.name == "nominal" and env.domain.name == "weak_gains"
        assert np.array_equal(twin.object_index, env.object_index) and np.allclose(twin.mass, env.mass)
        assert not np.allclose(twin.domain.kp, env.domain.kp)
    finally:
        policy.close()
        env.close()


@pytest.mark.parametrize("domain,words", [("latency", "has latency"), ("backlash", "different sizes")])
def test_refuses_domains_it_cannot_solve(tiny_env_cfg, gen, domain, words):
    env = _env(tiny_env_cfg, domain, n=2)
    policy = IdealResidualPolicy(P.parse_policy(f"generalist:{gen}+ideal:0.1"))
    try:
        with pytest.raises(ValueError, match=words):
            policy.check_env(env)
    finally:
        policy.close()
        env.close()


def test_pipeline_evaluates_the_ceiling_beside_direct(tmp_path, tiny_env_cfg, gen, weak_domain):
    """``evaluate.ceiling``: the pipeline's evaluate stage adds method ``ideal``; at bound 0 it is direct transfer."""
    from dexndm.pipeline.steps import evaluate_methods

    env = {k: v for k, v in tiny_env_cfg.items() if k in ("object_names", "grasp_dir", "grasp", "randomization")}
    task = {"object_set": "cuboids", "axes": "+z", "wrist": "palm_up", "episode_steps": STEPS}
    out = evaluate_methods(tmp_path, generalist=gen, residuals={}, domain=weak_domain, task=task, seeds=[0, 1],
                           episodes=2, num_envs=2, env=env, source_domain="nominal", ceiling=0.0)
    assert set(out["per_seed"]) == {"direct", "ideal", "source"}
    assert out["per_seed"]["ideal"] == out["per_seed"]["direct"]
    assert out["per_seed"]["source"] != out["per_seed"]["direct"]          # the gap is there to win back
