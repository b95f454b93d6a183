// The Daemon module; see docs/ARCHITECTURE.md.
