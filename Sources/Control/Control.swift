// The Control module; see docs/ARCHITECTURE.md.
