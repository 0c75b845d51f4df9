"""The MJCF model of the CLEVR-Robot scene (table, five balls, a pusher, invisible walls).

Physical constants live here next to the model they shape. See ``clevr.py`` for the environment
that drives it and ``../shared/spec/clevr_robot.md`` for the facts it was rebuilt from.
"""

from __future__ import annotations

import math

__all__ = [
    "BALL_COLORS_RGBA",
    "BALL_RADIUS",
    "PUSHER_RADIUS",
    "WORKBENCH",
    "build_xml",
]

BALL_RADIUS = 0.13
BALL_DENSITY = 1.0
# Set on the free joints themselves: a <freejoint> ignores <default><joint damping=...>.
BALL_DAMPING = 0.75
PUSHER_RADIUS = 0.05
PUSHER_MASS = 0.05
# Calibrated (bench/calibrate_push.py) so that a clean push moves the target ball 0.14-0.15.
PUSHER_DAMPING = 2.15
MOTOR_CTRL_RANGE = 2.0
FRICTION = (0.8, 0.1, 0.1)
TIMESTEP = 0.01
SOLVER_ITERATIONS = 20

# Ball centres may reach but not cross this rectangle (x_min, x_max, y_min, y_max); it is also the
# workbench of the out-of-workbench check. Wall surfaces sit one ball radius outside it.
WORKBENCH = (-0.6, 0.6, -0.3, 0.7)

# RGBA of red, blue, green, purple, cyan (CLEVR's palette, slightly brightened for small renders).
BALL_COLORS_RGBA = (
    (0.85, 0.15, 0.15, 1.0),
    (0.15, 0.30, 0.90, 1.0),
    (0.15, 0.70, 0.20, 1.0),
    (0.55, 0.20, 0.75, 1.0),
    (0.10, 0.80, 0.85, 1.0),
)
_BALL_NAMES = ("red", "blue", "green", "purple", "cyan")

# The "slanted" camera (visual only): in front of the table, looking down this many degrees at
# the workbench centre from this distance, like the original CLEVR-Robot's view. At 4:3 and
# fovy 45 it frames the whole workbench with balls at its corners.
CAMERA_PITCH_DEG = 55.0
CAMERA_DISTANCE = 2.1
CAMERA_FOVY = 45.0

# Collision groups: bit 1 = table/walls/balls, bit 2 = pusher/balls. The pusher touches balls
# only, so it can be teleported anywhere (over a wall, off the table) without contacts.
_TABLE_BITS = 1
_BALL_BITS = 3
_PUSHER_BITS = 2


def build_xml() -> str:
    """Return the MJCF XML string of the scene."""
    x0, x1, y0, y1 = WORKBENCH
    r = BALL_RADIUS
    wall_t = 0.05  # half-thickness
    wall_h = 0.3
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    half_w = (x1 - x0) / 2 + r + 2 * wall_t
    half_d = (y1 - y0) / 2 + r + 2 * wall_t
    walls = [
        # name, pos, size: inner surfaces at x0 - r, x1 + r, y0 - r, y1 + r
        ("wall_left", (x0 - r - wall_t, cy), (wall_t, half_d)),
        ("wall_right", (x1 + r + wall_t, cy), (wall_t, half_d)),
        ("wall_front", (cx, y0 - r - wall_t), (half_w, wall_t)),
        ("wall_back", (cx, y1 + r + wall_t), (half_w, wall_t)),
    ]
    wall_xml = "\n".join(
        f'    <geom name="{n}" type="box" pos="{p[0]:.4f} {p[1]:.4f} {wall_h}" '
        f'size="{s[0]:.4f} {s[1]:.4f} {wall_h}" rgba="0.5 0.5 0.5 0" '
        f'contype="{_TABLE_BITS}" conaffinity="{_TABLE_BITS}"/>'
        for n, p, s in walls
    )
    balls_xml = "\n".join(
        f"""    <body name="ball_{name}" pos="0 0 {r}">
      <joint name="ball_{name}" type="free" damping="{BALL_DAMPING}"/>
      <geom name="ball_{name}" type="sphere" size="{r}" density="{BALL_DENSITY}"
            rgba="{' '.join(f'{c:.3f}' for c in rgba)}" material="ball"
            contype="{_BALL_BITS}" conaffinity="{_BALL_BITS}"/>
    </body>"""
        for name, rgba in zip(_BALL_NAMES, BALL_COLORS_RGBA)
    )
    f = " ".join(str(v) for v in FRICTION)
    pitch = math.radians(CAMERA_PITCH_DEG)
    cam_y = cy - CAMERA_DISTANCE * math.cos(pitch)
    cam_z = CAMERA_DISTANCE * math.sin(pitch)
    cam_up = f"0 {math.sin(pitch):.4f} {math.cos(pitch):.4f}"
    return f"""<mujoco model="clevr_robot">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="{TIMESTEP}" integrator="Euler" iterations="{SOLVER_ITERATIONS}"/>
  <visual>
    <global offwidth="1280" offheight="960"/>
    <quality shadowsize="1024"/>
    <headlight ambient="0.25 0.25 0.25" diffuse="0.25 0.25 0.25" specular="0.1 0.1 0.1"/>
  </visual>
  <default>
    <geom friction="{f}"/>
  </default>
  <asset>
    <texture name="sky" type="skybox" builtin="gradient" rgb1="0.80 0.82 0.85" rgb2="0.45 0.47 0.50"
             width="256" height="256"/>
    <texture name="grid" type="2d" builtin="checker" rgb1="0.70 0.70 0.69" rgb2="0.64 0.64 0.63"
             width="256" height="256"/>
    <material name="table" texture="grid" texrepeat="2.5 2.5" texuniform="true" reflectance="0"/>
    <material name="ball" specular="0.6" shininess="0.6"/>
  </asset>
  <worldbody>
    <light name="key" pos="-0.6 -0.8 2.4" dir="0.25 0.35 -1" directional="true" castshadow="true"
           diffuse="0.4 0.4 0.4" specular="0.3 0.3 0.3"/>
    <light name="fill" pos="1.0 0.4 1.8" dir="-0.4 -0.1 -1" castshadow="false"
           diffuse="0.2 0.2 0.2" specular="0 0 0"/>
    <!-- A plane collides everywhere whatever its size; the size only draws it (to the horizon). -->
    <geom name="table" type="plane" pos="{cx} {cy} 0" size="6 6 0.1"
          material="table" contype="{_TABLE_BITS}" conaffinity="{_TABLE_BITS}"/>
    <!-- Drawn only: an opaque plane (a thin box shows shadow acne), lighter than the table. -->
    <geom name="workbench" type="plane" pos="{cx} {cy} 0.001" size="{(x1 - x0) / 2 + r} {(y1 - y0) / 2 + r} 0.1"
          rgba="0.80 0.80 0.78 1" contype="0" conaffinity="0"/>
{wall_xml}
{balls_xml}
    <body name="pusher" pos="0 0 {r}">
      <joint name="pusher_x" type="slide" axis="1 0 0" damping="{PUSHER_DAMPING}"/>
      <joint name="pusher_y" type="slide" axis="0 1 0" damping="{PUSHER_DAMPING}"/>
      <geom name="pusher" type="sphere" size="{PUSHER_RADIUS}" mass="{PUSHER_MASS}"
            rgba="0.15 0.15 0.15 1" contype="{_PUSHER_BITS}" conaffinity="{_PUSHER_BITS}"/>
    </body>
    <camera name="slanted" pos="{cx} {cam_y:.4f} {cam_z:.4f}" xyaxes="1 0 0 {cam_up}" fovy="{CAMERA_FOVY}"/>
    <camera name="top" pos="{cx} {cy} 2.6" xyaxes="1 0 0 0 1 0" fovy="45"/>
  </worldbody>
  <actuator>
    <motor name="pusher_x" joint="pusher_x" ctrlrange="-{MOTOR_CTRL_RANGE} {MOTOR_CTRL_RANGE}"/>
    <motor name="pusher_y" joint="pusher_y" ctrlrange="-{MOTOR_CTRL_RANGE} {MOTOR_CTRL_RANGE}"/>
  </actuator>
</mujoco>
"""
