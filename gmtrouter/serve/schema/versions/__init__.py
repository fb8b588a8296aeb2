"""One file per schema revision, oldest first; a released revision never changes."""
