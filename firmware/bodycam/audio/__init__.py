"""Sound: microphone sources, drift correction to the system clock, AAC/Opus encoding, a level meter.

The data flow mirrors video's: source -> drift corrector -> encoder -> (pre-event audio | writer).
"""
