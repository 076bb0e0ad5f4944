"""Experiments: variants and holdouts tied to a rule's moment, and their results.

Pure: `assign` says which arm a visitor is in, `stats` how the arms compare
(always-valid confidence sequences), `report` turns the engines' per-day
counters into what the dashboard and `kairos experiments` show. The engines
record assignments and count; nothing here does I/O.
"""
