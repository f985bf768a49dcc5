"""NFT rewards: one collectible minted per (user, achievement) unlocked in gamification."""
