"""`bodycam press|dock|undock|battery`: the simulator's hands, through the running daemon's socket.

A press goes through the same path as the physical button (ButtonPanel.inject), so the state machine
cannot tell them apart; the reply says what the press meant and the state it left the camera in.
"""

from __future__ import annotations

import argparse

from .cli_args import percent
from .cli_status import add_socket_args, socket_from_args
from .controls.buttons import BUTTONS
from .controls.gestures import GESTURES
from .daemon.control import request


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "press", help="press a camera button (simulation, tests)",
        description="Make the running daemon see a button gesture, as if pressed on the camera: "
                    "double starts recording, single adds a marker, hold (3 s) stops; a function-"
                    "button hold toggles stealth (docs/daemon.md).")
    p.add_argument("gesture", choices=GESTURES, help="the gesture: " + ", ".join(GESTURES))
    p.add_argument("--button", choices=BUTTONS, default="record", help="which button (default: record)")
    add_socket_args(p)
    p.set_defaults(run=run_press)
    for name, text in (("dock", "put the camera in its dock"), ("undock", "take the camera out of its dock")):
        q = sub.add_parser(name, help=f"{text} (simulation)",
                           description=f"Tell the running daemon its dock-sense pin says: {text}.")
        add_socket_args(q)
        q.set_defaults(run=run_dock, docked=name == "dock")
    b = sub.add_parser("battery", help="set the simulated battery level",
                       description="Set the battery level the running daemon sees (simulation only).")
    b.add_argument("percent", type=percent, help="0 to 100")
    add_socket_args(b)
    b.set_defaults(run=run_battery)


def run_press(args: argparse.Namespace) -> int:
    reply = request(socket_from_args(args), {"cmd": "press", "button": args.button, "gesture": args.gesture})
    p = reply["press"]
    print(f"{p['button']} {p['gesture']}: {p['intent']} ({p['state_before']} -> {p['state']})")
    return 0


def run_dock(args: argparse.Namespace) -> int:
    reply = request(socket_from_args(args), {"cmd": "dock" if args.docked else "undock"})
    print(f"{'docked' if reply['docked'] else 'undocked'}: state {reply['state']}")
    return 0


def run_battery(args: argparse.Namespace) -> int:
    reply = request(socket_from_args(args), {"cmd": "battery", "percent": args.percent})
    print(f"battery {reply['battery_percent']:g} %: state {reply['state']}")
    return 0
