"""The simulator: the real daemon on a laptop, driven by a scenario file or an interactive panel.

It runs ``bodycam run`` as a child process with gpiozero's mock pins and talks to it only through
the control socket (daemon/control.py), exactly as the status and press commands do on a Pi, so a
scenario that passes here exercises the same code that ships.
"""
