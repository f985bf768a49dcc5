"""Trading: a simulated market, market orders against virtual cash, portfolios and fills."""
