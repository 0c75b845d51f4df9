"""The goal language of the Meta-World environment: instruction texts for every task, and a parser.

What it holds:

- :data:`TRAIN_PHRASES`: the training wordings of the ten data tasks (the "train" suite; the only
  texts a model may be trained on).
- :data:`REPHRASE_PHRASES`: held-out rewordings of the same ten tasks (the "rephrase" suite).
- :data:`NOVEL_PHRASES`: texts of the unseen easy and hard tasks (the "easy" and "hard" suites).
- :func:`parse_task` / :func:`parse_goal`: a rule-based parser (keywords and regular expressions on
  the lowercased text, no learning) from any of these texts, and similar ones, to its task.
- :func:`describe`: one text of a task in a style; :func:`suite_items`: the goal items of a suite.

The rephrase and novel wordings are TEST DATA: no model (language model, policy, reward model)
may be trained or tuned on them. Only :data:`TRAIN_PHRASES` is training data.

The scene: a Sawyer arm with a two-finger gripper at a table, with a puck, a button box, a door
with a lock, a sliding window, a faucet, a mug and a coffee machine, a hammer and a nail, or a
ball and a goal net, depending on the task.
"""

from __future__ import annotations

import re

import numpy as np

from kalm.envs.base import GoalItem
from kalm.envs.metaworld.tasks import (
    ALL_TASKS,
    DATA_TASKS,
    EASY_TASKS,
    HARD_TASKS,
    TaskGoal,
    suite_tasks,
)

__all__ = [
    "NOVEL_PHRASES",
    "REPHRASE_PHRASES",
    "STYLES",
    "TRAIN_PHRASES",
    "describe",
    "parse_goal",
    "parse_task",
    "suite_items",
]

STYLES = ("train", "rephrase")
"""The styles of :func:`describe`: the training wordings, or the held-out rewordings."""

# --------------------------------------------------------------------------------------------
# Training wordings of the data tasks (train suite).
# --------------------------------------------------------------------------------------------
TRAIN_PHRASES: dict[str, tuple[str, ...]] = {
    "reach": (
        "Reach the target.",
        "Reach the target point.",
        "Reach the goal position.",
        "Move the gripper to the target.",
        "Move the gripper to the target point.",
        "Move the arm to the goal position.",
        "Move your hand to the target.",
        "Go to the target point.",
        "Go to the goal position.",
        "Robot, reach the target.",
        "Robot, move the gripper to the target point.",
        "Please reach the target.",
        "Please move the gripper to the goal position.",
        "Could you reach the target point?",
        "Reach for the target.",
        "Reach the marked point.",
        "Get the gripper to the target.",
        "Bring the gripper to the target point.",
        "Move the end effector to the target.",
        "The arm should reach the target position.",
        "Reach out to the goal point.",
    ),
    "push": (
        "Push the puck to the goal.",
        "Push the puck to the goal position.",
        "Push the block to the target.",
        "Push the puck across the table to the goal.",
        "Slide the puck to the goal.",
        "Slide the puck over to the target spot.",
        "Move the puck to the goal.",
        "Robot, push the puck to the goal.",
        "Please push the puck to the goal.",
        "Push the object to the goal.",
        "Could you push the puck to the target?",
        "Push the puck along the table to the goal spot.",
        "Use the gripper to push the puck to the goal.",
        "Shove the puck to the goal.",
        "Nudge the puck toward the goal.",
        "Push the puck until it sits on the goal.",
        "Get the puck to the goal by pushing it.",
        "Push the block over to the goal position.",
        "The puck needs to be pushed to the goal.",
        "Robot arm, slide the block to the target.",
        "Push the puck into the goal area.",
    ),
    "pick-place": (
        "Pick up the puck and place it at the goal.",
        "Pick the puck up and put it at the goal position.",
        "Pick and place the puck at the goal.",
        "Lift the puck and place it at the target.",
        "Pick up the puck and move it to the goal in the air.",
        "Grab the puck and put it at the goal.",
        "Grasp the puck and place it at the target position.",
        "Robot, pick up the puck and place it at the goal.",
        "Please pick up the puck and put it at the goal.",
        "Lift the puck to the goal point.",
        "Pick up the block and place it at the goal.",
        "Could you pick up the puck and place it at the target?",
        "Place the puck at the goal in the air.",
        "Put the puck at the goal point above the table.",
        "Pick up the puck and hold it at the goal.",
        "Lift the puck into the air and bring it to the goal.",
        "Grab the block and place it at the target point.",
        "Pick up the object and put it at the goal.",
        "Raise the puck to the goal position.",
        "The puck should be picked up and placed at the goal.",
        "Use the gripper to pick up the puck and place it at the goal.",
    ),
    "button-press": (
        "Press the button.",
        "Press the button on the box.",
        "Push the button.",
        "Push the button in.",
        "Press the red button.",
        "Robot, press the button.",
        "Please press the button.",
        "Could you press the button?",
        "Press the button horizontally.",
        "Push the button on the box in.",
        "Press the button all the way in.",
        "Hit the button.",
        "Push in the button.",
        "Press the button with the gripper.",
        "Use the arm to press the button.",
        "Press the button on the front of the box.",
        "Robot arm, push the button.",
        "Press the button until it clicks.",
        "Move to the button and press it.",
        "The button needs to be pressed.",
        "Press in the button on the box.",
    ),
    "door-unlock": (
        "Unlock the door.",
        "Unlock the door lock.",
        "Turn the lock to unlock the door.",
        "Robot, unlock the door.",
        "Please unlock the door.",
        "Could you unlock the door?",
        "Turn the door lock to the unlocked position.",
        "Rotate the lock to unlock the door.",
        "Unlock the lock on the door.",
        "Twist the lock on the door to unlock it.",
        "Unlock the door by turning the lock.",
        "Use the gripper to unlock the door.",
        "Unlock the door, robot.",
        "Turn the knob of the lock to unlock the door.",
        "Go unlock the door.",
        "The door needs to be unlocked.",
        "Unlock the door by rotating its lock.",
        "Turn the lock dial to unlock the door.",
        "Robot arm, unlock the door lock.",
        "Make the door unlocked.",
        "Get the door unlocked.",
    ),
    "door-open": (
        "Open the door.",
        "Pull the door open.",
        "Open the door by its handle.",
        "Pull the door open by the handle.",
        "Robot, open the door.",
        "Please open the door.",
        "Could you open the door?",
        "Grab the handle and open the door.",
        "Swing the door open.",
        "Open the door all the way.",
        "Pull the handle to open the door.",
        "Use the gripper to open the door.",
        "Open the door, robot.",
        "Open up the door.",
        "Pull on the door handle to open it.",
        "Go open the door.",
        "The door needs to be opened.",
        "Get the door open.",
        "Robot arm, pull the door open.",
        "Open the door wide.",
        "Pull open the door.",
    ),
    "window-open": (
        "Open the window.",
        "Slide the window open.",
        "Slide the window open sideways.",
        "Robot, open the window.",
        "Please open the window.",
        "Could you open the window?",
        "Open the window by sliding it.",
        "Push the window open.",
        "Slide the window to open it.",
        "Open the window all the way.",
        "Use the gripper to slide the window open.",
        "Open the window, robot.",
        "Open up the window.",
        "Slide open the window.",
        "Go open the window.",
        "The window needs to be opened.",
        "Get the window open.",
        "Robot arm, slide the window open.",
        "Open the window sideways.",
        "Push the window handle to open the window.",
        "Slide the window pane open.",
    ),
    "faucet-open": (
        "Open the faucet.",
        "Turn on the faucet.",
        "Turn the faucet on.",
        "Turn the faucet handle to open it.",
        "Robot, open the faucet.",
        "Please turn on the faucet.",
        "Could you open the faucet?",
        "Rotate the faucet handle to open the faucet.",
        "Open the tap.",
        "Turn on the tap.",
        "Turn the tap on.",
        "Twist the faucet handle open.",
        "Use the gripper to turn on the faucet.",
        "Open the faucet, robot.",
        "Open up the faucet.",
        "Go turn on the faucet.",
        "The faucet needs to be turned on.",
        "Get the faucet open.",
        "Robot arm, turn the faucet on.",
        "Turn the faucet handle all the way open.",
        "Open the water faucet.",
    ),
    "coffee-push": (
        "Push the mug under the coffee machine.",
        "Push the cup under the coffee machine.",
        "Slide the mug under the coffee machine.",
        "Push the mug to the coffee machine.",
        "Robot, push the mug under the coffee machine.",
        "Please push the mug under the coffee machine.",
        "Could you push the mug under the coffee machine?",
        "Move the mug under the coffee machine.",
        "Push the coffee mug under the machine.",
        "Slide the cup under the coffee machine.",
        "Push the mug beneath the coffee machine.",
        "Use the gripper to push the mug under the coffee machine.",
        "Push the mug under the coffee machine, robot.",
        "Push the mug into place under the coffee machine.",
        "Go push the mug under the coffee machine.",
        "The mug needs to be pushed under the coffee machine.",
        "Get the mug under the coffee machine.",
        "Robot arm, slide the mug under the coffee machine.",
        "Push the mug forward under the coffee machine.",
        "Push the mug until it is under the coffee machine.",
        "Slide the coffee cup under the machine.",
    ),
    "coffee-button": (
        "Press the coffee machine button.",
        "Press the button on the coffee machine.",
        "Push the button on the coffee machine.",
        "Press the coffee button.",
        "Robot, press the coffee machine button.",
        "Please press the button on the coffee machine.",
        "Could you press the coffee machine's button?",
        "Hit the button on the coffee machine.",
        "Press the start button of the coffee machine.",
        "Push the coffee machine button.",
        "Use the gripper to press the coffee machine button.",
        "Press the coffee machine button, robot.",
        "Press the button of the coffee machine.",
        "Go press the coffee button.",
        "The coffee machine button needs to be pressed.",
        "Press in the coffee machine button.",
        "Robot arm, press the button on the coffee machine.",
        "Push in the coffee button.",
        "Press the button on the front of the coffee machine.",
        "Press the coffee machine's start button.",
    ),
}

# --------------------------------------------------------------------------------------------
# Held-out rewordings of the data tasks (rephrase suite). TEST DATA: never train on these.
# --------------------------------------------------------------------------------------------
REPHRASE_PHRASES: dict[str, tuple[str, ...]] = {
    "reach": (
        "Extend the arm until the fingertips touch the goal location.",
        "Position the end-effector at the designated spot.",
        "Steer the hand over to the marked location.",
        "Guide the claw toward the highlighted waypoint.",
        "Travel with the gripper to the indicated coordinates.",
        "Navigate the manipulator to the goal location.",
        "Touch the target spot with the fingers.",
        "Head over to the goal location with your hand.",
        "I'd like the manipulator to arrive at the target location.",
        "Send the gripper over to where the target is.",
        "Make the hand arrive at the designated location.",
        "Take the fingers to the marked spot.",
    ),
    "push": (
        "Drive the disc along the tabletop until it rests on the marked spot.",
        "Scoot the hockey puck over to its destination.",
        "Propel the disk across the surface to the designated location.",
        "Keep the puck on the table and shift it to the goal location.",
        "Glide the disc across the table to the goal.",
        "Make the puck travel along the tabletop to the destination.",
        "Shift the cube over to the marked location.",
        "I want the disc relocated to the goal spot by sliding it.",
        "Bump the puck over to where the goal is.",
        "Displace the hockey puck toward the destination.",
        "Send the puck gliding over the table to its target.",
        "Drag the puck across the surface to the goal marker.",
    ),
    "pick-place": (
        "Hoist the disc off the table and set it down at the designated point.",
        "Snatch the hockey puck and carry it up to the marked location.",
        "Elevate the disk to the destination hovering above the surface.",
        "Clutch the cube and relocate it to the goal location mid-air.",
        "Take hold of the disc and deliver it to the spot in mid-air.",
        "Scoop up the puck and deposit it at its destination.",
        "Get the disc airborne and bring it to the target location.",
        "Seize the puck, then float it over to the goal location.",
        "Carry the disk through the air to the marked position.",
        "Collect the puck and suspend it at the designated point.",
        "Take the cube off the tabletop and hold it at the goal location.",
        "Pluck the puck from the table and transport it to the goal point.",
    ),
    "button-press": (
        "Depress the switch on the side of the box.",
        "Jab the switch mounted on the box.",
        "Poke the push-button until it clicks in.",
        "Activate the switch on the box by pushing it.",
        "Give the switch a firm poke.",
        "Trigger the pushbutton on the housing.",
        "Ring the buzzer on the box.",
        "Engage the switch on the box by pressing it inward.",
        "Punch the switch sideways until it is fully in.",
        "I need that switch on the box depressed.",
        "Drive the plunger on the box all the way in.",
        "Click the switch on the box.",
    ),
    "door-unlock": (
        "Disengage the door's latch.",
        "Unbolt the door.",
        "Unlatch the door.",
        "Release the lock on the door.",
        "Release the door's bolt.",
        "Undo the lock on the door.",
        "Disengage the locking mechanism of the door.",
        "Flip the door's latch to the released position.",
        "Disarm the door lock.",
        "Spin the dial on the door so it is not locked anymore.",
        "Make it so the door is no longer locked.",
        "Disengage the bolt on the door.",
    ),
    "door-open": (
        "Tug the door toward you using its handle.",
        "Leave the door ajar by pulling its handle.",
        "Yank the door wide.",
        "Draw the door toward you until it stands wide.",
        "Haul the door outward by its handle.",
        "Make the doorway passable by swinging the door out.",
        "Tug on the door's grip until it swings out.",
        "Let the door swing out by hauling on its handle.",
        "Throw the door wide.",
        "Crack the door ajar.",
        "I'd like the door pulled toward me.",
        "Heave the door outward so it stands wide.",
    ),
    "window-open": (
        "Draw the sash aside to let some air in.",
        "Shift the glass panel aside to air out the room.",
        "Let some fresh air in by moving the sash sideways.",
        "Crack the window.",
        "Give the room ventilation by parting the window.",
        "Unseal the casement by sliding it aside.",
        "Make an opening in the window by moving the pane.",
        "Drag the pane sideways until there's a gap.",
        "Move the sash over to expose the gap.",
        "I want the window ajar.",
        "Widen the gap in the window by moving the sash.",
        "Part the window panes.",
    ),
    "faucet-open": (
        "Let the water run.",
        "Get the water flowing from the spigot.",
        "Start the water.",
        "Swivel the spigot's lever so water comes out.",
        "Rotate the spigot lever to release water.",
        "Make the water pour out of the spigot.",
        "Crank the spigot to let water out.",
        "Unscrew the spigot so water flows.",
        "I'd like running water from the spigot.",
        "Swing the spigot's lever to start the flow.",
        "Let the water out of the spigot.",
        "Activate the water supply at the spigot.",
    ),
    "coffee-push": (
        "Scoot the cup over so it sits below the espresso maker's spout.",
        "Position the mug beneath the brewer's nozzle.",
        "Nudge the cup along the table until it's beneath the espresso maker.",
        "Line the mug up below the dispenser of the coffee maker.",
        "Shove the cup into the spot below the espresso spout.",
        "Get the drinking cup in position under the coffee maker's spout.",
        "Relocate the mug to the spot underneath the brewer.",
        "Slide the cup forward so it ends up under the espresso dispenser.",
        "Drive the mug along the tabletop to sit beneath the coffee maker.",
        "Set the cup beneath the espresso maker's outlet.",
        "Bump the mug over until it's right below the coffee spout.",
        "Guide the cup into the slot under the machine's nozzle.",
    ),
    "coffee-button": (
        "Depress the switch on the espresso maker.",
        "Poke the espresso maker's start switch.",
        "Activate the brewer by pushing its switch.",
        "Jab the switch on the front of the coffee maker.",
        "Switch on the espresso machine.",
        "Trigger the espresso maker with its pushbutton.",
        "Punch the coffee maker's switch.",
        "Give the switch on the espresso machine a poke.",
        "Click the coffee maker's power switch.",
        "Turn on the espresso machine with its switch.",
        "Engage the espresso maker's pushbutton.",
        "I need the switch on the coffee maker depressed.",
    ),
}

# --------------------------------------------------------------------------------------------
# Texts of the unseen easy and hard tasks (easy and hard suites). TEST DATA: never train on these.
# --------------------------------------------------------------------------------------------
NOVEL_PHRASES: dict[str, tuple[str, ...]] = {
    "reach-wall": (
        "Reach the target, with a wall in the way.",
        "Reach the target point behind the wall.",
        "Move the gripper to the target on the other side of the wall.",
        "Go around the wall and reach the goal position.",
        "Reach over the wall to the target.",
        "Robot, reach the target despite the wall.",
        "Get the gripper past the wall to the target point.",
        "With a wall between you and the target, reach it.",
        "Move the arm around the barrier to the goal position.",
        "Touch the target spot on the far side of the wall.",
        "Steer the hand past the partition to the marked location.",
        "Reach the goal point; a wall stands in the way.",
    ),
    "push-wall": (
        "Push the puck to the goal past the wall.",
        "Push the puck around the wall to the goal.",
        "Slide the puck to the goal, with a wall in the way.",
        "Push the block to the target behind the wall.",
        "Move the puck around the wall to the goal position.",
        "Robot, push the puck past the wall to the goal.",
        "Get the puck to the goal by pushing it around the wall.",
        "Nudge the puck around the barrier to the goal spot.",
        "Shove the puck past the obstacle to the goal.",
        "Push the puck to the goal; there is a wall in between.",
        "Slide the disc to the far side of the wall.",
        "Drive the puck along the table around the wall to its target.",
    ),
    "pick-place-wall": (
        "Pick up the puck and place it at the goal behind the wall.",
        "Lift the puck over the wall and place it at the goal.",
        "Pick and place the puck at the target, with a wall in the way.",
        "Grab the puck and put it at the goal on the other side of the wall.",
        "Robot, pick up the puck and lift it over the wall to the goal.",
        "Pick the block up and place it past the wall at the target.",
        "Raise the puck above the wall and set it at the goal point.",
        "Carry the puck over the barrier to the goal position.",
        "Lift the puck past the obstacle and place it at the target.",
        "Pick up the puck and move it across the wall to the goal in the air.",
        "Hoist the disc over the wall and deposit it at the goal.",
        "Grasp the puck and bring it over the wall to the target point.",
    ),
    "button-press-wall": (
        "Press the button behind the wall.",
        "Press the button, with a wall in the way.",
        "Reach past the wall and press the button.",
        "Push the button on the box behind the wall.",
        "Robot, press the button despite the wall.",
        "Go around the wall and push the button.",
        "Press the button on the other side of the wall.",
        "Hit the button that sits behind the wall.",
        "Press the button; there is a wall in front of it.",
        "Depress the switch behind the barrier.",
        "Reach around the obstacle and press the button.",
        "Push in the button past the wall.",
    ),
    "door-lock": (
        "Lock the door.",
        "Turn the lock to lock the door.",
        "Robot, lock the door.",
        "Please lock the door.",
        "Rotate the door lock to the locked position.",
        "Twist the lock on the door to lock it.",
        "Make sure the door is locked.",
        "Bolt the door.",
        "Engage the lock on the door.",
        "Latch the door.",
        "Could you lock the door?",
        "Secure the door with its lock.",
    ),
    "door-close": (
        "Close the door.",
        "Shut the door.",
        "Push the door closed.",
        "Swing the door shut.",
        "Robot, close the door.",
        "Please shut the door.",
        "Push the door shut by its handle.",
        "Close the open door.",
        "Could you close the door?",
        "Shut the door all the way.",
        "Push on the door handle to close it.",
        "Get the door closed.",
    ),
    "window-close": (
        "Close the window.",
        "Shut the window.",
        "Slide the window closed.",
        "Slide the window shut.",
        "Robot, close the window.",
        "Please shut the window.",
        "Could you close the window?",
        "Push the window closed sideways.",
        "Close the window all the way.",
        "Slide the pane back to close the window.",
        "Get the window shut.",
        "Seal the window by sliding it closed.",
    ),
    "faucet-close": (
        "Close the faucet.",
        "Turn off the faucet.",
        "Turn the faucet off.",
        "Turn the faucet handle to close it.",
        "Robot, close the faucet.",
        "Please turn off the faucet.",
        "Shut the faucet.",
        "Turn off the tap.",
        "Close the tap.",
        "Rotate the faucet handle to shut off the water.",
        "Stop the water by turning the faucet off.",
        "Twist the faucet handle closed.",
    ),
    "make-coffee": (
        "Make coffee.",
        "Make a cup of coffee.",
        "Brew some coffee.",
        "Push the mug under the coffee machine and then press the button.",
        "Slide the mug under the coffee machine, then press its button.",
        "Put the cup under the coffee machine and press the start button.",
        "Robot, make me a coffee.",
        "First push the mug under the machine, then press the coffee button.",
        "Prepare a coffee: move the mug under the machine and hit the button.",
        "Get the mug under the coffee machine and push the button.",
        "Place the cup beneath the coffee machine and then press the button to brew.",
        "Brew a cup of coffee by pushing the mug under the machine and pressing the button.",
    ),
    "locked-door-open": (
        "Unlock the door and then open it.",
        "Unlock the door, then pull it open.",
        "Open the locked door.",
        "First unlock the door, then open it.",
        "Open the door after unlocking it.",
        "Turn the lock to unlock the door and pull the door open.",
        "Robot, unlock and open the door.",
        "Unlock the door and swing it open.",
        "The door is locked: unlock it and open it.",
        "Get the door unlocked and then opened.",
        "Unbolt the door and pull it open by the handle.",
        "Release the lock, then open the door.",
    ),
    "hammer": (
        "Hammer the nail in.",
        "Pick up the hammer and hammer the nail in.",
        "Use the hammer to drive the nail in.",
        "Grab the hammer and hit the nail.",
        "Hammer the nail into the board.",
        "Robot, pick up the hammer and pound the nail.",
        "Take the hammer and knock the nail in.",
        "Drive the nail in with the hammer.",
        "Strike the nail with the hammer.",
        "Please hammer in the nail.",
        "Lift the hammer and bang the nail flush.",
        "Grasp the hammer and tap the nail down.",
    ),
    "soccer": (
        "Kick the ball into the goal.",
        "Push the ball into the goal net.",
        "Score a goal with the ball.",
        "Shoot the soccer ball into the net.",
        "Robot, kick the ball into the net.",
        "Get the ball into the goal.",
        "Push the soccer ball into the goal.",
        "Play soccer: put the ball in the net.",
        "Roll the ball into the goal net.",
        "Knock the ball into the goal.",
        "Score with the soccer ball.",
        "Nudge the ball past the goal line into the net.",
    ),
}

# --------------------------------------------------------------------------------------------
# The parser: keyword rules on normalised text, the more specific tasks first.
# --------------------------------------------------------------------------------------------


def _rx(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


_SOCCER = _rx(
    r"\b(?:soccer|football|balls?|net|goal ?net|goalpost|goalie|kick\w*|scor(?:e|es|ed|ing))\b"
)
_HAMMER = _rx(r"\b(?:hammer\w*|nails?|mallet)\b")

_COFFEE = _rx(r"\b(?:coffee|espresso|mugs?|cups?|machines?|makers?|brewers?)\b")
_MUG = _rx(r"\b(?:mugs?|cups?)\b")
_MAKE_COFFEE = _rx(
    r"\b(?:make|makes|making|brew|brews|brewing|prepare|preparing|fix)\b"
    r"(?: \w+){0,3} (?:coffee|espresso)\b"
    r"|\bcup of (?:coffee|espresso)\b"
)
_BUTTON = _rx(
    r"button|\bswitch\w*|\b(?:de)?press\w*|\bbuzzer|\bplunger|\bjab\w*|\bpok(?:e|es|ed|ing)\b"
    r"|\bpunch\w*|\bclick\w*|\btrigger\w*"
)

_DOOR = _rx(r"\bdoor|\bunlock|\block|\bunbolt|\bbolt\b|\bunlatch|\blatch")
_UNLOCK = _rx(
    r"\bunlock|\bunbolt|\bunlatch|\bdisengag|\bdisarm|\breleas|\bundo\b"
    r"|\b(?:not|no longer) locked\b"
)
_LOCKED = _rx(r"\blocked\b")
_LOCK = _rx(r"\block|\bbolt|\blatch|\bsecur|\bengag")
_CLOSE = _rx(r"\bclos|\bshut|\bslam|\bseal")
_DOOR_OPEN = _rx(
    r"\bopen|\bpull|\btug|\byank|\bhaul|\bheav|\bdraw\b|\bdrawn\b|\bswing|\bswung|\bajar\b|\bwide\b"
    r"|\bfling|\bthrow"
)

_WINDOW = _rx(r"\bwindow|\bsash|\bpanes?\b|\bcasement|\bglass\b")
_FAUCET = _rx(r"\bfaucet|\btaps?\b|\bspigot|\bwater\b|\bsink\b")
_FAUCET_CLOSE = _rx(r"\bclos|\bshut|\boff\b|\bstop|\btighten")

_WALL = _rx(r"\bwalls?\b|\bbarriers?\b|\bpartitions?\b|\bobstacles?\b|\bdividers?\b")
_PICK = _rx(
    r"\bpick|\blift|\braise|\bgrasp|\bgrab|\bgrip\b|\bhoist|\belevat|\bcarr(?:y|ies|ied|ying)\b"
    r"|\bsnatch"
    r"|\bscoop|\bseiz|\bpluck|\bclutch|\bhold|\bair\b|\bairborne|\bmid air\b|\babove the table\b"
    r"|\bhover|\bsuspend|\bdeposit"
)
_PLACE = _rx(r"\bplac|\bput\b|\bset\b|\bdeliver|\btransport|\bfloat")
_OBJECT = _rx(r"\b(?:pucks?|blocks?|discs?|disks?|objects?|cubes?)\b")
_PUSH = _rx(
    r"\bpush|\bshov|\bslid|\bnudg|\bscoot|\bpropel|\bglid|\bdrag|\bbump|\bdisplac|\bdrive|\broll"
)
_REACH = _rx(
    r"\breach|\btouch|\bgripper|\barm\b|\bhand\b|\bend effector|\beffector|\bclaw|\bfingers?\b"
    r"|\bfingertips?\b|\bmanipulator|\btarget|\bwaypoint|\bcoordinates?\b"
    r"|\bgoal (?:point|position|location)|\bmarked|\bdesignated"
)


def _normalise(text: str) -> str:
    t = text.lower().replace("\u2019", "'").replace("'", "")
    return " ".join(re.sub(r"[^a-z0-9]+", " ", t).split())


def _walled(t: str, task: str) -> str:
    return f"{task}-wall" if _WALL.search(t) else task


def parse_task(text: str) -> str | None:
    """The Meta-World task ``text`` asks for, or None when it asks for none of them.

    Rule-based: keyword patterns on the lowercased text, checked from the most specific task to
    the most general (soccer, hammer, the coffee tasks, the door tasks, window, faucet, button,
    pick-place, push, reach), and a wall in the text turns reach/push/pick-place/button-press into
    its wall variant. A bare task name ("door-open", "door open") parses to that task.
    """
    if not isinstance(text, str):
        return None
    name = re.sub(r"[\s_]+", "-", text.strip().lower())
    if name in ALL_TASKS:
        return name
    t = _normalise(text)
    if not t:
        return None

    if _SOCCER.search(t):
        return "soccer"
    if _HAMMER.search(t):
        return "hammer"

    if _COFFEE.search(t) or _MAKE_COFFEE.search(t):
        if _MAKE_COFFEE.search(t) or (_MUG.search(t) and _BUTTON.search(t)):
            return "make-coffee"
        if _BUTTON.search(t):
            return "coffee-button"
        if _MUG.search(t):
            return "coffee-push"
        # "coffee" / "machine" alone: fall through to the other rules.

    if _DOOR.search(t):
        opens = bool(_DOOR_OPEN.search(t))
        if (_UNLOCK.search(t) or _LOCKED.search(t)) and opens and not _CLOSE.search(t):
            return "locked-door-open"
        if _UNLOCK.search(t):
            return "door-unlock"
        if _LOCK.search(t):
            return "door-lock"
        if _CLOSE.search(t):
            return "door-close"
        if opens:
            return "door-open"
        return None

    if _WINDOW.search(t):
        return "window-close" if _CLOSE.search(t) else "window-open"
    if _FAUCET.search(t):
        return "faucet-close" if _FAUCET_CLOSE.search(t) else "faucet-open"
    if _BUTTON.search(t):
        return _walled(t, "button-press")
    if _PICK.search(t) or (_OBJECT.search(t) and _PLACE.search(t)):
        return _walled(t, "pick-place")
    if _PUSH.search(t) or _OBJECT.search(t):
        return _walled(t, "push")
    if _REACH.search(t):
        return _walled(t, "reach")
    return None


def parse_goal(text: str) -> TaskGoal | None:
    """The :class:`TaskGoal` of ``text`` (see :func:`parse_task`), or None."""
    task = parse_task(text)
    return None if task is None else TaskGoal(task)


# --------------------------------------------------------------------------------------------
# Texts of tasks, and the goal items of the suites.
# --------------------------------------------------------------------------------------------


def _phrases(task: str, style: str) -> tuple[str, ...]:
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; valid: {', '.join(STYLES)}")
    if task in DATA_TASKS:
        return (TRAIN_PHRASES if style == "train" else REPHRASE_PHRASES)[task]
    if task in EASY_TASKS or task in HARD_TASKS:
        return NOVEL_PHRASES[task]
    raise ValueError(f"unknown Meta-World task {task!r}; known: {', '.join(ALL_TASKS)}")


def describe(task: str, style: str = "train", rng: np.random.Generator | None = None) -> str:
    """One instruction text of ``task`` in ``style`` ("train" or "rephrase").

    Data tasks draw from :data:`TRAIN_PHRASES` or :data:`REPHRASE_PHRASES`; easy and hard tasks
    draw from :data:`NOVEL_PHRASES` in either style. With ``rng`` None the first phrase, else a
    uniform draw. Raises ValueError for an unknown task or style.
    """
    phrases = _phrases(task, style)
    if rng is None:
        return phrases[0]
    return phrases[int(rng.integers(len(phrases)))]


def suite_items(suite: str, seed: int = 0) -> list[GoalItem]:
    """Every goal item of ``suite``: ``GoalItem(text, TaskGoal(task), category=suite)``.

    "train": every (task, phrase) of :data:`TRAIN_PHRASES`; "rephrase": of
    :data:`REPHRASE_PHRASES`; "easy" / "hard": of :data:`NOVEL_PHRASES` for the suite's tasks.
    The order is fixed (the suite's tasks in :func:`suite_tasks` order, each task's phrases in
    order); ``seed`` is accepted for interface compatibility and ignored. Raises ValueError for
    an unknown suite.
    """
    tasks = suite_tasks(suite)  # raises ValueError for an unknown suite
    table = {"train": TRAIN_PHRASES, "rephrase": REPHRASE_PHRASES}.get(suite, NOVEL_PHRASES)
    return [
        GoalItem(text, TaskGoal(task), category=suite) for task in tasks for text in table[task]
    ]
