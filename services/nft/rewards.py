"""Which collectible each achievement earns.

achievement            name                     rarity
first_trade            First Trade Badge        common
first_profitable_sell  Green Candle Trophy      rare
ten_trades             Seasoned Trader Medal    rare
level_5                Level 5 Star             epic
(any other)            "<title> Badge"          common
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Rarity = Literal["common", "rare", "epic", "legendary"]


@dataclass(frozen=True, slots=True)
class Reward:
    name: str
    rarity: Rarity


REWARDS: dict[str, Reward] = {
    "first_trade": Reward("First Trade Badge", "common"),
    "first_profitable_sell": Reward("Green Candle Trophy", "rare"),
    "ten_trades": Reward("Seasoned Trader Medal", "rare"),
    "level_5": Reward("Level 5 Star", "epic"),
}


def reward_for(achievement: str, title: str) -> Reward:
    """The reward of a known achievement; a new one still earns a common badge."""
    return REWARDS.get(achievement) or Reward(f"{title} Badge", "common")
