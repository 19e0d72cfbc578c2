"""Thin modules over `abflow.tasks` (the tasks ship in the wheel as `abflow.tasks`)."""
