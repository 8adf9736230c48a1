"""Offscreen rendering of recorded episodes to GIF (or MP4 where imageio-ffmpeg exists).

Rendering needs an OpenGL backend: ``MUJOCO_GL=osmesa`` with Debian's ``libosmesa6``
on CPU machines, ``MUJOCO_GL=egl`` on GPU machines.  ``gl_available()`` says whether
one works here and why not, so callers and tests can skip with a clear reason.
"""

from __future__ import annotations

import functools
from pathlib import Path

import mujoco
import numpy as np

from dexndm.files import atomic_path
from dexndm.sim.physics import FULLPHYSICS


#: Default view: the grasp region, seen obliquely from above the palm.
CAMERA = {"lookat": (0.15, 0.0, 0.04), "distance": 0.3, "azimuth": 270.0, "elevation": -35.0}


@functools.cache
def gl_available() -> tuple[bool, str]:
    """(True, "") if an offscreen GL context can be made, else (False, reason).  Probed once per process:
    without OSMesa or EGL MuJoCo falls back to GLFW, whose second failed start aborts the interpreter."""
    try:
        model = mujoco.MjModel.from_xml_string("<mujoco><worldbody><geom size='.1'/></worldbody></mujoco>")
        renderer = mujoco.Renderer(model, 8, 8)
        renderer.close()
        return True, ""
    except Exception as exc:  # noqa: BLE001 - any GL failure means "cannot render here"
        return False, (f"no offscreen OpenGL ({type(exc).__name__}: {exc}); install libosmesa6 and set "
                       "MUJOCO_GL=osmesa (CPU) or MUJOCO_GL=egl (GPU)")


def _camera(spec: dict | None = None) -> mujoco.MjvCamera:
    spec = {**CAMERA, **(spec or {})}
    cam = mujoco.MjvCamera()
    cam.lookat[:] = spec["lookat"]
    cam.distance, cam.azimuth, cam.elevation = spec["distance"], spec["azimuth"], spec["elevation"]
    return cam


def render_states(model: mujoco.MjModel, states: np.ndarray, *, width: int = 320, height: int = 240,
                  camera: dict | None = None) -> np.ndarray:
    """Frames [T, H, W, 3] (uint8) of full-physics states [T, nstate] of ``model``."""
    ok, reason = gl_available()
    if not ok:
        raise RuntimeError(reason)
    data = mujoco.MjData(model)
    renderer = mujoco.Renderer(model, height, width)
    option = mujoco.MjvOption()
    option.geomgroup[:] = 1
    option.geomgroup[5] = 0  # padding slots of objects
    cam = _camera(camera)
    frames = np.empty((len(states), height, width, 3), dtype=np.uint8)
    try:
        for t, state in enumerate(states):
            mujoco.mj_setState(model, data, state, FULLPHYSICS)
            mujoco.mj_forward(model, data)
            renderer.update_scene(data, cam, option)
            frames[t] = renderer.render()
    finally:
        renderer.close()
    return frames


def save_video(frames: np.ndarray, path: str | Path, fps: int = 20) -> Path:
    """Write frames to ``path`` (.gif always works; .mp4 needs imageio-ffmpeg)."""
    import imageio.v3 as iio

    path = Path(path)
    with atomic_path(path) as tmp:
        if path.suffix == ".gif":
            iio.imwrite(tmp, list(frames), extension=".gif", duration=1000.0 / fps, loop=0)
        else:
            iio.imwrite(tmp, frames, fps=fps)
    return path


def side_by_side(*videos: np.ndarray) -> np.ndarray:
    """Concatenate equally sized frame stacks horizontally, padding shorter ones with their last frame."""
    length = max(len(v) for v in videos)
    padded = [np.concatenate([v, np.repeat(v[-1:], length - len(v), axis=0)]) if len(v) < length else v
              for v in videos]
    return np.concatenate(padded, axis=2)
