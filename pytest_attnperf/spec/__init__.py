"""What a case is, torch-free: shapes and dtypes, units, options, markers, the device record, model presets."""
