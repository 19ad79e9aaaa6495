"""Named configurations (YAML), listed by `noisydarts presets`."""
