"""The searches over schedules: seeded runs (`runner`), shrinking a failing seed (`shrink`), and every interleaving of
the small cases (`exhaustive`)."""
