"""Training plumbing shared by every example (one place, never copied per example)."""
