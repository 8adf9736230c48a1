"""Domains: presets load, a file changes exactly what it names, bad files are refused by key."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import yaml

from dexndm.hand import constants as hc
from dexndm.sim.domain import DOMAIN_DIR, DomainError, available_domains, load_domain
from dexndm.sim.scene import build_object_model
from dexndm.sim.objects import object_set

#: Which Domain fields each file key sets.
KEY_FIELDS = {
    ("actuator", "kp"): {"kp"}, ("actuator", "kp_scale"): {"kp"}, ("actuator", "kd"): {"kd"},
    ("actuator", "kd_scale"): {"kd"}, ("actuator", "torque_limit"): {"torque_limit"},
    ("joint", "damping"): {"damping"}, ("joint", "armature"): {"armature"},
    ("joint", "frictionloss"): {"frictionloss"}, ("joint", "backlash"): {"backlash"},
    ("links", "mass"): {"link_mass"}, ("links", "mass_scale"): {"link_mass"},
    ("friction", "link"): {"link_friction"}, ("friction", "fingertip"): {"fingertip_friction"},
    ("latency", "control_steps"): {"latency_control_steps"}, ("latency", "physics_steps"): {"latency_physics_steps"},
    ("sensor", "joint_noise_std"): {"joint_noise_std"}, ("sensor", "joint_bias"): {"joint_bias"},
    ("object", "friction_scale"): {"object_friction_scale"}, ("object", "mass_scale"): {"object_mass_scale"},
}


def named_fields(path):
    data = yaml.safe_load(path.read_text()) or {}
    fields = set()
    if "base" in data:
        fields |= named_fields(DOMAIN_DIR / f"{data['base']}.yaml")
    for section, body in data.items():
        if isinstance(body, dict):
            for key in body:
                fields |= KEY_FIELDS[(section, key)]
    return fields


def differing(a, b):
    out = set()
    for f in dataclasses.fields(a):
        if f.name in ("raw", "name", "description"):
            continue
        x, y = getattr(a, f.name), getattr(b, f.name)
        same = (x == y) if not isinstance(x, np.ndarray) else np.array_equal(x, y)
        if not same:
            out.add(f.name)
    return out


@pytest.mark.parametrize("name", [n for n in available_domains() if n != "nominal"])
def test_preset_changes_exactly_what_it_names(name):
    nominal, domain = load_domain("nominal"), load_domain(name)
    changed = differing(nominal, domain)
    assert changed, f"{name} changes nothing"
    assert changed == named_fields(DOMAIN_DIR / f"{name}.yaml")


def test_user_file_sets_exactly_its_parameters_in_the_compiled_model(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("name: mine\nactuator:\n  torque_limit: 0.25\n")
    shape = object_set("cuboids")[0]
    a = build_object_model(load_domain("nominal"), shape, 0.78)
    b = build_object_model(load_domain(str(path)), shape, 0.78)
    changed = [name for name in ("actuator_forcerange", "actuator_gainprm", "actuator_biasprm", "dof_damping",
                                 "dof_armature", "dof_frictionloss", "body_mass", "geom_friction", "jnt_range")
               if not np.array_equal(getattr(a, name), getattr(b, name))]
    assert changed == ["actuator_forcerange"]
    assert b.actuator_forcerange[0, 1] == pytest.approx(0.25)


def test_paper_gains_use_isaac_order():
    d = load_domain("paper_gains")
    # Table 11 lists 3.52 first (Isaac index 0 = hardware joint 1, index MCP forward).
    assert d.kp[1] == pytest.approx(3.52) and d.kp[0] == pytest.approx(1.78)
    assert d.kp[12] == pytest.approx(1.94)  # Isaac index 4 = thumb cmc
    assert d.link_mass["palm"] == pytest.approx(0.257)
    combined = load_domain("combined")  # built on paper_gains via `base:`
    np.testing.assert_array_equal(combined.kp, d.kp)
    assert combined.torque_limit[0] == pytest.approx(0.35)


@pytest.mark.parametrize("text, message", [
    ("actuator:\n  kpp: 1.0\n", "actuator.kpp"),
    ("actuators:\n  kp: 1.0\n", "unknown key 'actuators'"),
    ("actuator:\n  kp: [1, 2, 3]\n", "needs 16 values"),
    ("actuator:\n  kp: -1.0\n", "actuator.kp"),
    ("joint:\n  damping: .nan\n", "joint.damping"),
    ("links:\n  mass:\n    wrist: 0.1\n", "links.mass.wrist"),
    ("latency:\n  control_steps: 1.5\n", "latency.control_steps"),
    ("latency:\n  physics_steps: 6\n", "latency.physics_steps"),
    ("joint_order: mujoco\n", "joint_order"),
    ("base: does_not_exist\n", "not found"),
    ("- a\n- b\n", "must be a mapping"),
])
def test_bad_domain_files_name_the_key(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(DomainError, match=message.replace("[", r"\[").replace(".", r"\.")):
        load_domain(str(path))


def test_base_cycle_is_refused(tmp_path):
    (tmp_path / "a.yaml").write_text(f"base: {tmp_path / 'b.yaml'}\n")
    (tmp_path / "b.yaml").write_text(f"base: {tmp_path / 'a.yaml'}\n")
    with pytest.raises(DomainError, match="cycle"):
        load_domain(str(tmp_path / "a.yaml"))


def test_missing_domain_lists_presets():
    with pytest.raises(DomainError, match="nominal"):
        load_domain("no_such_domain")


def test_to_dict_is_plain_data():
    data = load_domain("combined").to_dict()
    assert yaml.safe_load(yaml.safe_dump(data))["kp"] == pytest.approx(list(load_domain("combined").kp))
    assert len(data["joint_bias"]) == hc.NUM_JOINTS
