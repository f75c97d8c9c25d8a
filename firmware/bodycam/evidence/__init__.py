"""Evidence: device key, segment manifests, the device-wide hash chain."""
