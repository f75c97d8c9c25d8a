"""Camera sources: the one seam between the firmware and whatever produces pixels."""
