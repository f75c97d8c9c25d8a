"""H.264 encoding: frames in, timestamped packets out."""
