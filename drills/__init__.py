"""Chaos drills with verdicts: faults through the Toxiproxy API under Locust load."""
