"""What the camera shows when its indicator pins cannot be opened: the red LED solid, if that pin works.

A daemon that cannot open its pins (no pin library, a pin held by another program, a wrong pin
number) must not exit: systemd would restart it every few seconds for ever, and the officer would see
nothing. The runner keeps it up in the fault state instead, and this stands in for ``Indicators``:
the red LED on solid if that one pin can be opened, every pattern a no-op. It has the same methods as
``Indicators``, so the state machine cannot tell the difference.
"""

from __future__ import annotations

import logging

from gpiozero import LED

from ..config import IndicatorsConfig

log = logging.getLogger(__name__)


class FaultLight:
    """Solid red whatever the state (the camera is faulted for good until restarted with working pins)."""

    def __init__(self, cfg: IndicatorsConfig) -> None:
        self._led: LED | None = None
        try:
            self._led = LED(cfg.red_led_pin)
            self._led.on()
        except Exception as e:  # no pin at all: the journal and `bodycam status` still say why
            log.warning("red LED unavailable too", extra={"event": "fault_light_unavailable",
                                                          "data": {"error": str(e) or type(e).__name__}})
            self._led = None

    @property
    def lit(self) -> bool:
        return self._led is not None and bool(self._led.value)

    def show(self, state: str) -> None:
        if self._led is not None:
            self._led.on()

    def set_stealth(self, on: bool) -> None:
        """No stealth: a camera that cannot take button presses must not look switched off."""

    def _nothing(self) -> None:
        """Sounds and vibration need their pins; with a pin fault there is nothing to play them on."""

    recording_started = recording_stopped = reminder = marker = ignored_hint = _nothing
    refused = storage_full = low_battery = clock_not_set = _nothing

    def wait_idle(self, timeout: float | None = None) -> bool:
        return True

    def close(self) -> None:
        if self._led is not None:
            self._led.close()
            self._led = None
