"""Training loop, losses, schedules and resumable runs."""
