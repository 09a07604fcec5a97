"""The search: a particle GA over candidates (spec §4), with injected evaluation."""
