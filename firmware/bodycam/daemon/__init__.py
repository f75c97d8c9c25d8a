"""The on-device daemon: state machine, control socket, systemd integration."""
