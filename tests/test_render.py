"""Offscreen rendering (skipped, with the reason, where no OpenGL backend works)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dexndm.sim import make_env
from dexndm.sim.render import gl_available, render_states, save_video, side_by_side

GL_OK, GL_REASON = gl_available()
pytestmark = pytest.mark.skipif(not GL_OK, reason=GL_REASON)


def test_episode_renders_to_gif_showing_motion(tiny_env_cfg, tmp_path):
    env = make_env(tiny_env_cfg, num_envs=1)
    td = env.reset()
    states = [env.physics.state[0].copy()]
    for _ in range(8):
        td["action"] = torch.ones(1, 16)  # close every joint: the picture must change
        td = env.step(td)["next"]
        states.append(env.physics.state[0].copy())
    frames = render_states(env.physics.models[0], np.array(states), width=96, height=72)
    assert frames.shape == (9, 72, 96, 3) and frames.dtype == np.uint8
    assert frames[0].std() > 5  # not a blank image
    assert np.abs(frames[-1].astype(int) - frames[0]).mean() > 0.5
    path = save_video(side_by_side(frames, frames[:4]), tmp_path / "ep.gif")
    import imageio.v3 as iio

    back = iio.imread(path, index=None)
    assert back.shape[0] == 9 and back.shape[2] == 192
    env.close()
