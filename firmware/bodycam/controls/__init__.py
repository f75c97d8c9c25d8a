"""The officer-facing controls: buttons -> gestures -> intents, and LEDs/buzzer/vibration feedback."""
