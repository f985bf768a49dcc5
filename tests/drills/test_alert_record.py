"""The alert record: when each alert fired and cleared, by name and by severity tier."""

from __future__ import annotations

from drills.observe import AlertRecord


def test_a_page_can_clear_while_its_ticket_still_fires() -> None:
    record = AlertRecord()
    record.seen({"XpEventsStale", "XpEventsStale/page", "XpEventsStale/ticket"}, at=10.0)
    record.seen({"XpEventsStale", "XpEventsStale/ticket"}, at=40.0)
    assert record.cleared_at("XpEventsStale/page") == 40.0
    assert record.cleared_at("XpEventsStale") is None  # a tier of it still fires
    assert record.firing_now() == {"XpEventsStale", "XpEventsStale/ticket"}
    assert record.fired_after("XpEventsStale", 5.0) == 5.0
    record.seen(set(), at=90.0)
    assert record.cleared_at("XpEventsStale") == 90.0
    assert record.firing_now() == set()
    # The periods a report and the fidelity table read are by alert name only.
    assert record.close(at=100.0) == [{"name": "XpEventsStale", "start": 10.0, "end": 90.0}]
