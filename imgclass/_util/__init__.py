"""Ground-floor helpers: text, interrupts, package data files, the version."""
