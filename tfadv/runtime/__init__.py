"""Process-wide settings and plumbing: the oneDNN default, quiet TensorFlow start-up, devices,
XLA, seeds, distribution strategies and atomic file writes.

Importing this package imports no TensorFlow (`tfadv.runtime.onednn` must run before it loads);
`tfadv.runtime.devices` does.
"""
